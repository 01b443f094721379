"""Deadlines through the local stack: with little time left, nothing is lost.

Every function runs with a 6 s timeout (``--lambda-timeout``), so a handler's
deadline is 4.5 s away: a backend that trickles its answer and a Management API
that hangs both outlast it. The sender of a message the backend never answered
is told to retry; a broadcast whose posts hang reaches everyone exactly once,
through the later invocation the handler handed them to before its deadline.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.e2e.support import StackProcess, open_socket, run
from tests.harness import wait_for
from tests.reliability.support import FaultBackend, Tracker, pump, stack_alive

pytestmark = pytest.mark.e2e

#: Every function's timeout here: its handlers keep 1.5 s back, so 4.5 s for the work.
LAMBDA_TIMEOUT = "6"
#: How long a hung post is held: past the deadline, short enough to stop the stack cleanly.
HANG_SECONDS = 8


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[StackProcess, FaultBackend]]:
    backend = FaultBackend()
    process = None
    try:
        process = StackProcess(
            "reliability-deadlines",
            "--backend-url",
            backend.url,
            "--fault-injection",
            "--lambda-timeout",
            LAMBDA_TIMEOUT,
        )
        yield process, backend
    finally:
        if process is not None:
            status = process.stop()
            assert status == 0, f"the stack did not stop cleanly ({status}):\n{process.output[-3000:]}"
        backend.stop()


def set_faults(stack: StackProcess, *rules: dict[str, Any]) -> None:
    request = urllib.request.Request(
        stack.endpoints["faults"],
        data=json.dumps({"rules": list(rules)}).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


async def join(
    session: aiohttp.ClientSession, stack: StackProcess, booking: str, names: list[str], tracker: Tracker
) -> tuple[dict[str, Any], dict[str, str]]:
    socks: dict[str, Any] = {}
    ids: dict[str, str] = {}
    for name in names:
        sock = await open_socket(session, stack.ws_url(type="chat", booking_id=booking, token=name))
        receipt = await sock.recv(10)
        assert receipt["type"] == "receipt", receipt
        socks[name], ids[name] = sock, str(receipt["connection_id"])
        tracker.add(name)
    return socks, ids


def test_a_trickling_backend_is_cut_off_before_the_deadline_and_the_retry_gets_through(
    stack: tuple[StackProcess, FaultBackend],
) -> None:
    process, backend = stack
    since = len(process.output)

    async def scenario() -> None:
        tracker, stop = Tracker(), asyncio.Event()
        async with aiohttp.ClientSession() as session:
            socks, _ = await join(session, process, "dl-" + uuid.uuid4().hex[:8], ["a", "b"], tracker)
            tasks = [asyncio.create_task(pump(n, s, tracker, stop)) for n, s in socks.items()]
            await socks["a"].send({"id": "slow-1", "fault": "trickle"})
            await wait_for(lambda: bool(tracker.errors["a"]), 15, "a told that its message failed")
            (error,) = tracker.errors["a"]
            assert error["code"] == "backend_unavailable"
            assert error["retryable"] is True
            assert error["ref"] == "slow-1"
            await wait_for(lambda: backend.cut_off >= 1, 10, "the trickled answer cut off")
            await socks["a"].send({"id": "slow-2"})  # the client retries (with a new id)
            await wait_for(
                lambda: all(tracker.counts[n]["slow-2"] == 1 for n in ("a", "b")), 15, "the retry delivered"
            )
            assert all(tracker.counts[n]["slow-1"] == 0 for n in ("a", "b"))
            assert tracker.errors["b"] == []
            stop.set()
            await asyncio.gather(*tasks)
            for sock in socks.values():
                await sock.close()

    run(scenario)
    stack_alive(process, since)


def test_posts_that_hang_past_the_deadline_are_handed_on_and_everyone_gets_the_message_once(
    stack: tuple[StackProcess, FaultBackend],
) -> None:
    process, _ = stack
    since = len(process.output)
    names = ["a", "b", "c", "d"]

    async def scenario() -> None:
        tracker, stop = Tracker(), asyncio.Event()
        async with aiohttp.ClientSession() as session:
            socks, ids = await join(session, process, "dl-" + uuid.uuid4().hex[:8], names, tracker)
            tasks = [asyncio.create_task(pump(n, s, tracker, stop)) for n, s in socks.items()]
            hung = [ids["b"], ids["c"]]
            # each of b's and c's next post is held far past the handler's deadline
            rule = {
                "status": 504,
                "delay": HANG_SECONDS,
                "connections": hung,
                "count": 1,
                "per_connection": True,
            }
            set_faults(process, rule)
            await socks["a"].send({"id": "hang-1"})
            await wait_for(
                lambda: all(tracker.counts[n]["hang-1"] >= 1 for n in names),
                HANG_SECONDS + 20,
                "every member got hang-1",
            )
            await asyncio.sleep(1.0)  # room for a duplicate to show up, if there were one
            for n in names:
                assert tracker.counts[n]["hang-1"] == 1, f"{n} got hang-1 {tracker.counts[n]['hang-1']} times"
                assert tracker.errors[n] == [], f"{n} got {tracker.errors[n]}"
            stop.set()
            await asyncio.gather(*tasks)
            for sock in socks.values():
                await sock.close()

    run(scenario)
    out = process.output[since:]
    assert "fanout" in out  # the hung posts went on in a later invocation
    stack_alive(process, since)
