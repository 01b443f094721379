"""Faults through the local stack, with real sockets: one test per scenario.

The stack runs as a child process (``python -m local_gateway --fault-injection``)
with its backend and DynamoDB replaced by loopback servers these tests control:
``FaultBackend`` (each message frame picks the backend's answer; ``down()``
refuses connections) and ``DynamoFaultProxy`` in front of an embedded moto
(throttling answers). The Management API's 429 and 410 come from the gateway's
``/_local/faults`` rules.

Invariants checked in every scenario:
- no crash: the stack process runs, answers a new socket's ping, and its output
  shows no escaped exception, ``internal_error`` or "Internal server error";
- a sender whose message could not be processed gets an error frame with the
  code of docs/protocol.md and its ``id`` as ``ref``;
- every live connection of the channel gets every broadcast exactly once
  (counted per message id, after a ping round trip on each socket);
- every dead connection's item is gone from the table.

The backend keeps the proxy's default 10 s timeout: a 3 s backend is slow, not
down, so the sender (and everyone) gets the message late, exactly once; an
answer slower than the timeout (``RELIABILITY_FULL=1`` only: it takes 10 s)
is explained with ``backend_unavailable``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import aiohttp
import pytest

from chalicelib.gateway import RetryPolicy
from tests.e2e.support import open_socket
from tests.harness import wait_for
from tests.reliability.scenes import Faults, Scene, assert_error, clear, open_faults, scenario
from tests.reliability.support import SLOW_SECONDS, drop

pytestmark = pytest.mark.e2e
FULL = os.environ.get("RELIABILITY_FULL") == "1"


@pytest.fixture(scope="module")
def faults() -> Iterator[Faults]:
    with open_faults() as opened:
        yield opened


@pytest.fixture
def env(faults: Faults) -> Iterator[Faults]:
    """Each scenario starts without faults and leaves none behind."""
    clear(faults)
    yield faults
    clear(faults)


# -- the backend -------------------------------------------------------------------


def test_backend_500_sender_gets_backend_unavailable_and_no_one_a_broadcast(env: Faults) -> None:
    async def body(s: Scene) -> None:
        await s.join("a", "b", "c")
        bad = await s.send("a", fault="500")
        assert_error(await s.error_for("a", bad), "backend_unavailable", retryable=True)
        good = await s.send("b")
        await s.delivered([good], ["a", "b", "c"])
        await s.settle(["a", "b", "c"])
        s.exactly_once([good], ["a", "b", "c"])
        s.exactly_once([bad], [], absent=["a", "b", "c"])
        s.no_errors(["b", "c"])
        assert env.backend.messages[bad] == 1  # the proxy never retries a message

    scenario(env, body)


def test_backend_invalid_json_sender_gets_backend_error(env: Faults) -> None:
    async def body(s: Scene) -> None:
        await s.join("a", "b")
        bad = await s.send("a", fault="invalid_json")
        assert_error(await s.error_for("a", bad), "backend_error", retryable=False)
        good = await s.send("a")
        await s.delivered([good], ["a", "b"])
        await s.settle(["a", "b"])
        s.exactly_once([good], ["a", "b"])
        s.exactly_once([bad], [], absent=["a", "b"])
        s.no_errors(["b"])

    scenario(env, body)


def test_backend_3s_slow_message_arrives_late_exactly_once_without_holding_up_others(
    env: Faults, capsys: pytest.CaptureFixture[str]
) -> None:
    async def body(s: Scene) -> None:
        await s.join("a", "b", "c")
        sent = time.perf_counter()
        slow = await s.send("a", fault="slow")
        quick = await s.send("b")  # sent after the slow one, answered meanwhile
        await s.delivered([quick], ["a", "b", "c"], timeout=SLOW_SECONDS + 10)
        await s.delivered([slow], ["a", "b", "c"], timeout=SLOW_SECONDS + 15)
        await s.settle(["a", "b", "c"])
        s.exactly_once([slow, quick], ["a", "b", "c"])
        s.no_errors(["a", "b", "c"])
        late = s.tracker.arrivals["a"][slow] - sent
        assert s.tracker.arrivals["a"][quick] < s.tracker.arrivals["a"][slow]
        with capsys.disabled():
            print(f"\n  slow backend ({SLOW_SECONDS:.0f} s): the sender got its broadcast after {late:.2f} s")

    scenario(env, body)


@pytest.mark.skipif(not FULL, reason="takes the proxy's 10 s backend timeout; RELIABILITY_FULL=1")
def test_backend_slower_than_the_timeout_sender_gets_backend_unavailable(env: Faults) -> None:
    async def body(s: Scene) -> None:
        await s.join("a", "b")
        bad = await s.send("a", fault="timeout")
        assert_error(await s.error_for("a", bad, timeout=25), "backend_unavailable", retryable=True)
        await s.settle(["a", "b"])
        s.exactly_once([bad], [], absent=["a", "b"])
        s.no_errors(["b"])

    scenario(env, body)


def test_backend_down_refused_senders_told_handshakes_fail_502_then_recovers(env: Faults) -> None:
    async def body(s: Scene) -> None:
        await s.join("a", "b")
        env.backend.down()
        bad = await s.send("a")
        assert_error(await s.error_for("a", bad), "backend_unavailable", retryable=True)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await open_socket(s.session, s.stack.ws_url(type="chat", booking_id=s.booking, token="late"))
        assert refused.value.status == 502
        await s.items_are({s.members["a"].connection_id, s.members["b"].connection_id})
        env.backend.up()
        await s.join("c")
        good = await s.send("b")
        await s.delivered([good], ["a", "b", "c"])
        await s.settle(["a", "b", "c"])
        s.exactly_once([good], ["a", "b", "c"])
        s.exactly_once([bad], [], absent=["a", "b", "c"])
        s.no_errors(["b", "c"])

    scenario(env, body)


# -- the Management API -------------------------------------------------------------


def test_management_api_429_burst_is_retried_everyone_gets_it_once(env: Faults) -> None:
    async def body(s: Scene) -> None:
        members = await s.join("a", "b", "c", "d")
        ids = [m.connection_id for m in members]
        env.management({"status": 429, "count": 3, "per_connection": True, "connections": ids})
        first = await s.send("a")
        await s.delivered([first], ["a", "b", "c", "d"])
        assert env.fault_state()["rules"][0]["answered"] == 3 * len(ids)
        # A burst shared by everyone: the next 10 posts, whoever they go to.
        env.management({"status": 429, "count": 10})
        second = await s.send("c")
        await s.delivered([second], ["a", "b", "c", "d"])
        assert env.fault_state()["rules"][0]["answered"] == 10
        env.management()
        await s.settle(["a", "b", "c", "d"])
        s.exactly_once([first, second], ["a", "b", "c", "d"])
        s.no_errors(["a", "b", "c", "d"])
        await s.items_are(set(ids))

    scenario(env, body)


def test_management_api_429_past_the_gateway_retries_a_later_attempt_delivers_it_once(env: Faults) -> None:
    async def body(s: Scene) -> None:
        a, b, c = await s.join("a", "b", "c")
        # exactly the gateway's own attempts (the stack runs the default policy): the fan-out gives up
        # on c, and the later attempt (an asynchronous invocation of fanout) gets through
        attempts = RetryPolicy().throttle_attempts
        rule = {"status": 429, "connections": [c.connection_id], "count": attempts, "per_connection": True}
        env.management(rule)
        late = await s.send("a")
        await s.delivered([late], ["a", "b", "c"])
        # the later attempt logs its line once its fan-out is done, just after c got its copy
        await wait_for(
            lambda: s.stack.output.find("attempt=1", s.since) >= 0, 20, "c's copy came from the later attempt"
        )
        env.management()
        await s.items_are({a.connection_id, b.connection_id, c.connection_id})
        await s.settle(["a", "b", "c"])
        s.exactly_once([late], ["a", "b", "c"])
        s.no_errors(["a", "b", "c"])

    scenario(env, body)


def test_management_api_429_throughout_others_still_get_it_once_and_c_the_next(env: Faults) -> None:
    async def body(s: Scene) -> None:
        a, b, c = await s.join("a", "b", "c")
        env.management({"status": 429, "connections": [c.connection_id]})
        lost = await s.send("a")
        await s.delivered([lost], ["a", "b"])
        # the later attempt for c fails too, and so does the delivery_failed note to it (throttled as well)
        await wait_for(
            lambda: s.stack.output.find("attempt=1", s.since) >= 0, 20, "the later attempt for c finished"
        )
        env.management()
        # c is live: its item stays, and the next broadcast reaches it.
        await s.items_are({a.connection_id, b.connection_id, c.connection_id})
        after = await s.send("b")
        await s.delivered([after], ["a", "b", "c"])
        await s.settle(["a", "b", "c"])
        s.exactly_once([lost, after], ["a", "b"])
        s.exactly_once([after], ["c"])
        s.exactly_once([lost], [], absent=["c"])
        s.no_errors(["a", "b"])

    scenario(env, body)


def test_management_api_410_removes_the_gone_connections_items_others_get_it_once(env: Faults) -> None:
    async def body(s: Scene) -> None:
        a, b, c, d = await s.join("a", "b", "c", "d")
        env.management({"status": 410, "connections": [c.connection_id, d.connection_id]})
        message = await s.send("a")
        await s.delivered([message], ["a", "b"])
        await s.items_are({a.connection_id, b.connection_id})
        await s.settle(["a", "b"])
        s.exactly_once([message], ["a", "b"], absent=["c", "d"])
        env.management()
        # c is unregistered now: its next message is explained, not lost silently.
        orphan = await s.send("c")
        assert_error(await s.error_for("c", orphan), "unknown_connection", retryable=False)
        await s.settle(["a", "b"])
        s.exactly_once([orphan], [], absent=["a", "b", "d"])
        s.no_errors(["a", "b"])

    scenario(env, body)


def test_stale_item_of_a_missed_disconnect_is_removed_by_the_next_broadcast(env: Faults) -> None:
    async def body(s: Scene) -> None:
        a, b = await s.join("a", "b")
        ghost = "GHOSTCONNECT0=" + uuid.uuid4().hex[:4]
        env.put_stale_item(s.booking, ghost)
        await s.items_are({a.connection_id, b.connection_id, ghost})
        message = await s.send("b")
        await s.delivered([message], ["a", "b"])
        await s.items_are({a.connection_id, b.connection_id})
        await s.settle(["a", "b"])
        s.exactly_once([message], ["a", "b"])
        s.no_errors(["a", "b"])

    scenario(env, body)


# -- DynamoDB throttling -----------------------------------------------------------


@pytest.mark.parametrize("error_type", ["ProvisionedThroughputExceededException", "ThrottlingException"])
def test_dynamodb_throttling_burst_is_absorbed_by_botocore_retries(env: Faults, error_type: str) -> None:
    async def body(s: Scene) -> None:
        await s.join("a", "b")
        before = sum(env.dynamodb.throttled.values())
        env.dynamodb.throttle(burst=3, error_type=error_type)
        await s.join("c")  # $connect's PutItem
        env.dynamodb.throttle(burst=3, error_type=error_type)
        message = await s.send("a")  # $default's Query on the index, then the channel's
        await s.delivered([message], ["a", "b", "c"])
        await s.settle(["a", "b", "c"])
        assert sum(env.dynamodb.throttled.values()) - before == 6
        s.exactly_once([message], ["a", "b", "c"])
        s.no_errors(["a", "b", "c"])
        env.dynamodb.throttle(burst=3, error_type=error_type)
        await s.members["c"].sock.close()  # $disconnect's Query and DeleteItem
        await s.items_are({s.members["a"].connection_id, s.members["b"].connection_id})

    scenario(env, body)


def test_dynamodb_throttling_a_fraction_each_message_delivered_once_or_explained(
    env: Faults, capsys: pytest.CaptureFixture[str]
) -> None:
    async def body(s: Scene) -> None:
        names = ["a", "b", "c"]
        await s.join(*names)
        before = sum(env.dynamodb.throttled.values())
        env.dynamodb.throttle(fraction=0.3)
        sent = [(names[i % 3], await s.send(names[i % 3])) for i in range(12)]

        def settled(sender: str, message_id: str) -> bool:
            everyone = all(s.tracker.counts[n][message_id] >= 1 for n in names)
            told = any(e.get("ref") == message_id for e in s.tracker.errors[sender])
            return everyone or told

        await wait_for(lambda: all(settled(*m) for m in sent), 45, "every message delivered or explained")
        env.dynamodb.clear()
        await s.settle(names)
        explained = 0
        for sender, message_id in sent:
            errors = [e for e in s.tracker.errors[sender] if e.get("ref") == message_id]
            if errors:
                explained += 1
                assert len(errors) == 1
                assert_error(errors[0], "backend_unavailable", retryable=True)
                s.exactly_once([message_id], [], absent=names)
            else:
                s.exactly_once([message_id], names)
        throttled = sum(env.dynamodb.throttled.values()) - before
        assert throttled > 0
        with capsys.disabled():
            print(
                f"\n  DynamoDB 30% throttled: {throttled} answers throttled, "
                f"{len(sent) - explained}/{len(sent)} messages delivered to all, {explained} explained"
            )

    scenario(env, body, timeout=90)


def test_dynamodb_throttling_sustained_sender_told_handshake_502_no_item(env: Faults) -> None:
    async def body(s: Scene) -> None:
        a, b = await s.join("a", "b")
        env.dynamodb.throttle(everything=True)
        bad = await s.send("a")
        # A handshake at the same time (botocore backs off for seconds before giving up on each).
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await open_socket(s.session, s.stack.ws_url(type="chat", booking_id=s.booking, token="late"))
        assert refused.value.status == 502
        assert_error(await s.error_for("a", bad, timeout=30), "backend_unavailable", retryable=True)
        env.dynamodb.clear()
        await s.items_are({a.connection_id, b.connection_id})  # the refused handshake left no item
        good = await s.send("b")
        await s.delivered([good], ["a", "b"])
        await s.settle(["a", "b"])
        s.exactly_once([good], ["a", "b"])
        s.exactly_once([bad], [], absent=["a", "b"])
        s.no_errors(["b"])

    scenario(env, body, timeout=90)


# -- clients that vanish ------------------------------------------------------------


def test_clients_dropping_without_a_close_frame_items_removed_others_get_it_once(env: Faults) -> None:
    async def body(s: Scene) -> None:
        a, b, c, d, e = await s.join("a", "b", "c", "d", "e")
        drop(c.sock, "rst")
        drop(d.sock, "fin")
        for gone in (c, d):
            s.stack.wait_for_log(rf"\$disconnect\s+{gone.connection_id}\s+removed close=1006", 15)
        await s.items_are({a.connection_id, b.connection_id, e.connection_id})
        first = [await s.send("a") for _ in range(3)]
        # e vanishes while broadcasts are in flight.
        racing = [await s.send("b") for _ in range(5)]
        drop(e.sock, "rst")
        await s.delivered(first + racing, ["a", "b"])
        await s.items_are({a.connection_id, b.connection_id})
        await s.settle(["a", "b"])
        s.exactly_once(first + racing, ["a", "b"])
        for n in ("c", "d", "e"):
            assert all(count <= 1 for count in s.tracker.counts[n].values()), s.tracker.counts[n]
        s.no_errors(["a", "b"])

    scenario(env, body)
