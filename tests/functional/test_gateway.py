"""ConnectionGateway against a Management API stand-in: signing, retries, bounds."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import ReadOnlyCredentials

from chalicelib.deadline import Deadline
from chalicelib.gateway import ConnectionGateway, RetryPolicy
from chalicelib.model import FanOutResult, PostOutcome
from chalicelib.response_parser import HttpError, HttpTimeout, ResponseTooLarge
from chalicelib.signing import region_for
from chalicelib.transport import Transport
from tests.harness import refused_port
from tests.standins import ManagementApiStandIn

#: What a test opened (transports, executors), closed after it.
_OPENED: list[Transport | ThreadPoolExecutor] = []


@pytest.fixture(autouse=True)
def _close_what_the_test_opened() -> Iterator[None]:
    yield
    while _OPENED:
        opened = _OPENED.pop()
        if isinstance(opened, Transport):
            opened.close()
        else:
            opened.shutdown()


def transport(workers: int, **options: Any) -> Transport:
    opened = Transport(workers, **options)
    _OPENED.append(opened)
    return opened


def executor(workers: int) -> ThreadPoolExecutor:
    opened = ThreadPoolExecutor(workers)
    _OPENED.append(opened)
    return opened


def recording(sleeps: list[float] | None) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    return sleep


@pytest.fixture
def mgmt() -> Iterator[ManagementApiStandIn]:
    server = ManagementApiStandIn().start()
    yield server
    server.stop()


def make_gateway(endpoint: str, *, sleeps: list[float] | None = None, workers: int = 4) -> ConnectionGateway:
    return ConnectionGateway(
        endpoint,
        transport=transport(workers, connect_timeout=0.5),
        credentials=lambda: ReadOnlyCredentials("AKIDEXAMPLE", "secret", "session-token"),
        region="eu-west-1",
        executor=executor(workers),
        retry=RetryPolicy(
            throttle_attempts=4, transient_attempts=3, base_delay=0.001, max_delay=0.002, attempt_seconds=1.5
        ),
        sleep=recording(sleeps),
    )


def test_posts_are_sigv4_signed_for_execute_api(mgmt: ManagementApiStandIn) -> None:
    mgmt.open.add("a/b+c=")
    gateway = make_gateway(mgmt.endpoint)
    assert gateway.post("a/b+c=", b'{"x":1}') is PostOutcome.DELIVERED
    assert mgmt.frames("a/b+c=") == [{"x": 1}]  # the id survives URL quoting
    (headers,) = mgmt.headers
    auth = headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in auth
    assert headers["X-Amz-Security-Token"] == "session-token"


def test_throttling_is_retried_a_bounded_number_of_times(mgmt: ManagementApiStandIn) -> None:
    sleeps: list[float] = []
    mgmt.open.add("T=")
    mgmt.throttle["T="] = 100
    gateway = make_gateway(mgmt.endpoint, sleeps=sleeps)
    assert gateway.post("T=", b"{}") is PostOutcome.FAILED
    assert mgmt.posts_to("T=") == 4
    assert len(sleeps) == 3


def test_server_errors_are_retried_then_failed(mgmt: ManagementApiStandIn) -> None:
    mgmt.open.add("S=")
    mgmt.fail.add("S=")
    assert make_gateway(mgmt.endpoint).post("S=", b"{}") is PostOutcome.FAILED
    assert mgmt.posts_to("S=") == 3


def test_unreachable_endpoint_fails_without_raising() -> None:
    with refused_port() as port:
        gateway = make_gateway(f"http://127.0.0.1:{port}/development")
        assert gateway.post("X=", b"{}") is PostOutcome.FAILED
        result = gateway.post_many(["X=", "Y="], b"{}")
    assert result.failed == ["X=", "Y="]
    assert result.delivered == 0


def test_fan_out_sorts_outcomes_and_reports_gone_through_the_callback(mgmt: ManagementApiStandIn) -> None:
    mgmt.open.update({"A=", "B=", "L="})
    mgmt.max_post_bytes = 10_000
    removed: list[str] = []
    gateway = make_gateway(mgmt.endpoint)
    result = gateway.post_many(["A=", "G=", "B="], b'{"m":1}', on_gone=removed.append)
    assert (result.delivered, result.gone, result.failed) == (2, ["G="], [])
    assert removed == ["G="]
    big = gateway.post_many(["L="], b'{"p":"' + b"x" * 20_000 + b'"}')
    assert big.too_large == ["L="]


def test_cleanup_failure_does_not_stop_delivery(mgmt: ManagementApiStandIn) -> None:
    mgmt.open.update({"A=", "B="})

    def broken(cid: str) -> None:
        raise RuntimeError("dynamodb down")

    result = make_gateway(mgmt.endpoint).post_many(["A=", "G1=", "G2=", "B="], b"{}", on_gone=broken)
    assert result.delivered == 2
    assert sorted(result.gone) == ["G1=", "G2="]


def test_a_cleanup_posts_through_the_same_transport_while_the_fan_out_awaits_it(
    mgmt: ManagementApiStandIn,
) -> None:
    """As the registry's DynamoDB calls do from ``on_gone``, on the executor's threads."""
    mgmt.open.update({"A=", "N="})
    gateway = make_gateway(mgmt.endpoint)
    removed: list[str] = []

    def remove(cid: str) -> None:
        assert gateway.post("N=", f'{{"gone":"{cid}"}}'.encode()) is PostOutcome.DELIVERED
        removed.append(cid)

    result = gateway.post_many(["A=", "G1=", "G2=", "G3="], b"{}", on_gone=remove)
    assert (result.delivered, sorted(result.gone)) == (1, ["G1=", "G2=", "G3="])
    assert sorted(removed) == ["G1=", "G2=", "G3="]  # every cleanup done before the answer
    assert sorted(frame["gone"] for frame in mgmt.frames("N=")) == ["G1=", "G2=", "G3="]


def test_threads_calling_at_once_each_get_their_own_answers(mgmt: ManagementApiStandIn) -> None:
    ids = [f"T{i}=" for i in range(8)]
    mgmt.open.update(ids)
    gateway = make_gateway(mgmt.endpoint)
    together = threading.Barrier(len(ids))

    def posts(cid: str) -> list[PostOutcome]:
        together.wait(10)
        return [gateway.post(cid, f'{{"n":{n}}}'.encode()) for n in range(5)]

    with ThreadPoolExecutor(len(ids)) as pool:
        outcomes = list(pool.map(posts, ids))
    assert outcomes == [[PostOutcome.DELIVERED] * 5] * len(ids)
    for cid in ids:
        assert mgmt.frames(cid) == [{"n": n} for n in range(5)]
    gateway.transport.close()  # every thread's loop and connections; a later call opens anew
    assert gateway.post("T0=", b'{"n":5}') is PostOutcome.DELIVERED


def test_a_call_from_a_coroutine_on_the_transports_own_loop_is_refused() -> None:
    shared = transport(1)

    async def nested() -> None:
        shared.run(asyncio.sleep(0))

    with pytest.raises(RuntimeError, match="its own loop"):
        shared.run(nested())


def test_region_comes_from_lambda_or_the_endpoint() -> None:
    assert region_for("https://abc.execute-api.ap-south-1.amazonaws.com/dev", {}) == "ap-south-1"
    assert region_for("https://chat.example.com/dev", {"AWS_REGION": "eu-central-1"}) == "eu-central-1"
    assert region_for("https://chat.example.com/dev", {}) == "us-east-1"


# -- deadline ----------------------------------------------------------------------


class SilentServer:
    """A Management API that accepts connections, reads requests and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}/development"
        self.requests = 0
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self.sock.settimeout(0.05)  # before the thread: the test may close the socket at once
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.requests += data.count(b"POST /development/@connections/")

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        for conn in self._conns:
            conn.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def silent_gateway(endpoint: str, workers: int) -> ConnectionGateway:
    # Timeouts far beyond the test's deadline: only the deadline can end these posts in time.
    return ConnectionGateway(
        endpoint,
        transport=transport(workers, connect_timeout=30.0),
        credentials=lambda: ReadOnlyCredentials("AKIDEXAMPLE", "secret", None),
        region="eu-west-1",
        executor=executor(2),
        retry=RetryPolicy(min_post_seconds=0.05, attempt_seconds=90.0),
    )


def test_deadline_caps_posts_that_never_answer_and_returns_the_rest_unsent(silent: SilentServer) -> None:
    gateway = silent_gateway(silent.endpoint, workers=3)
    ids = [f"C{i}=" for i in range(10)]
    deadline = Deadline.after(0.4)
    result = gateway.post_many(ids, b"{}", deadline=deadline)
    # The first three went out and were cut at the deadline (failed, a later attempt's job);
    # nothing else was started, because nothing could have finished in time.
    assert result.failed == ids[:3]
    assert result.unsent == ids[3:]
    assert result.delivered == 0
    assert result.gone == []
    assert result.attempted == 3
    assert time.monotonic() >= deadline.at - 0.05  # they waited for an answer until the deadline
    assert silent.requests == 3  # one attempt each: no retry could fit


def test_a_passed_deadline_attempts_nothing(silent: SilentServer) -> None:
    gateway = silent_gateway(silent.endpoint, workers=4)
    result = gateway.post_many(["A=", "B="], b"{}", deadline=Deadline.after(-1))
    assert result.unsent == ["A=", "B="]
    assert result.attempted == 0
    assert gateway.post("A=", b"{}", deadline=Deadline.after(0.01)) is PostOutcome.UNSENT
    assert silent.requests == 0


def test_single_post_with_a_deadline_is_cut_and_failed(silent: SilentServer) -> None:
    gateway = silent_gateway(silent.endpoint, workers=1)
    assert gateway.post("A=", b"{}", deadline=Deadline.after(0.2)) is PostOutcome.FAILED
    assert silent.requests == 1


@dataclass(frozen=True)
class FixedBackoff(RetryPolicy):
    pause: float = 1.0

    def delay(self, attempt: int) -> float:
        return self.pause


def throttled_gateway(
    mgmt: ManagementApiStandIn, sleep: Callable[[float], None], pause: float = 1.0
) -> ConnectionGateway:
    """A gateway whose posts to ``T=`` are always throttled, backing off ``pause`` each time."""
    mgmt.open.add("T=")
    mgmt.throttle["T="] = 100
    return ConnectionGateway(
        mgmt.endpoint,
        transport=transport(1, connect_timeout=0.5),
        credentials=lambda: ReadOnlyCredentials("AKIDEXAMPLE", "secret", None),
        region="eu-west-1",
        retry=FixedBackoff(throttle_attempts=50, min_post_seconds=0.1, attempt_seconds=1.5, pause=pause),
        sleep=sleep,
    )


def test_retry_sleeps_are_capped_to_the_time_left(mgmt: ManagementApiStandIn) -> None:
    clock = FakeClock()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.sleep(seconds)

    gateway = throttled_gateway(mgmt, sleep)
    deadline = Deadline(clock.now + 0.5, clock)
    assert gateway.post("T=", b"{}", deadline=deadline) is PostOutcome.FAILED
    # However long the backoff wanted, no sleep runs past the deadline minus one post's minimum.
    # The 1 s backoff is cut to what leaves one post's minimum: that retry is the last one.
    assert sleeps == [pytest.approx(0.4)]
    assert clock.now == pytest.approx(deadline.at - 0.1)
    assert mgmt.posts_to("T=") == 2


def test_the_last_retry_goes_even_when_its_sleep_overshoots(mgmt: ManagementApiStandIn) -> None:
    clock = FakeClock()
    gateway = throttled_gateway(mgmt, lambda seconds: clock.sleep(seconds + 0.002))  # a real sleep ends late
    deadline = Deadline(clock.now + 0.5, clock)
    assert gateway.post("T=", b"{}", deadline=deadline) is PostOutcome.FAILED
    # the backoff cut to the time left is followed by its retry, not by giving up
    assert mgmt.posts_to("T=") == 2


@pytest.mark.parametrize(
    ("pause", "overshoot", "reason"),
    [
        # the backoff fit, its sleep ended with less than one post's minimum left
        (0.1, 0.35, "429; no time left to retry"),
        # the backoff was cut to the time left (the last try), its sleep ended past the deadline
        (1.0, 1.0, "no time left to send; no time left to retry"),
    ],
    ids=["into-the-minimum", "past-the-deadline"],
)
def test_a_retry_whose_sleep_overshot_is_not_sent(
    mgmt: ManagementApiStandIn, caplog: pytest.LogCaptureFixture, pause: float, overshoot: float, reason: str
) -> None:
    """A sleep that ends late (a loaded machine): what can no longer be answered in time is
    not sent, and the post fails saying why."""
    clock = FakeClock()
    gateway = throttled_gateway(mgmt, lambda seconds: clock.sleep(seconds + overshoot), pause=pause)
    with caplog.at_level(logging.WARNING, logger="chalicelib.gateway"):
        assert gateway.post("T=", b"{}", deadline=Deadline(clock.now + 0.5, clock)) is PostOutcome.FAILED
    assert mgmt.posts_to("T=") == 1
    (failed,) = [r for r in caplog.records if r.getMessage() == "post failed"]
    assert getattr(failed, "reason", None) == reason


def test_a_fan_out_to_no_one_answers_an_empty_result_and_signs_nothing() -> None:
    reads: list[int] = []

    def credentials() -> ReadOnlyCredentials:
        reads.append(1)
        return ReadOnlyCredentials("AKIDEXAMPLE", "secret", None)

    with refused_port() as port:
        gateway = ConnectionGateway(
            f"http://127.0.0.1:{port}/development", "eu-west-1", credentials, transport(2)
        )
        result = gateway.post_many([], b"{}")
    assert result == FanOutResult()  # nothing delivered, gone, failed or unsent
    assert reads == []  # no signing key derived for nothing


def test_a_fan_out_that_fails_unexpectedly_leaves_no_post_running(
    mgmt: ManagementApiStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in one post stops the whole fan-out: its other posts are cancelled, not left on
    the thread's loop to resume (posting the old frame) when the next fan-out runs it."""
    ids = ["C0=", "BAD=", *(f"C{i}=" for i in range(1, 40))]  # the first worker is mid-post when BAD= fails
    mgmt.open.update({*ids, "NEXT="})
    path = ConnectionGateway.path

    def failing(self: ConnectionGateway, connection_id: str) -> str:
        if connection_id == "BAD=":
            raise RuntimeError("a bug in the proxy")
        return path(self, connection_id)

    monkeypatch.setattr(ConnectionGateway, "path", failing)
    gateway = make_gateway(mgmt.endpoint, workers=2)
    with pytest.raises(ExceptionGroup):
        gateway.post_many(ids, b"{}")
    posted = len(mgmt.calls)
    assert gateway.post_many(["NEXT="], b"{}").delivered == 1
    assert len(mgmt.calls) == posted + 1  # the next fan-out posts its own frame, nothing of the last


def test_without_a_deadline_nothing_is_unsent(mgmt: ManagementApiStandIn) -> None:
    mgmt.open.update({"A=", "B="})
    result = make_gateway(mgmt.endpoint).post_many(["A=", "B=", "G="], b"{}")
    assert (result.delivered, result.gone, result.unsent) == (2, ["G="], [])


def test_fan_out_and_post_when_the_deadline_leaves_time_deliver(mgmt: ManagementApiStandIn) -> None:
    mgmt.open.update({"A=", "B="})
    gateway = make_gateway(mgmt.endpoint)
    result = gateway.post_many(["A=", "B="], b"{}", deadline=Deadline.after(30))
    assert result.delivered == 2
    assert result.unsent == []
    assert gateway.post("A=", b"{}", deadline=Deadline.after(30)) is PostOutcome.DELIVERED


# -- the HTTP/1.1 client against servers that misbehave ----------------------------


class ScriptedServer:
    """Answers every request on a connection with one canned byte string, then maybe closes.

    ``close_delay``: close that long after answering, without saying so in the answer
    (an idle keep-alive connection the server drops). ``tls``: (certfile, keyfile).
    """

    def __init__(
        self,
        answer: bytes,
        *,
        close: bool = False,
        close_delay: float = 0.0,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.answer, self.close_after, self.close_delay = answer, close or close_delay > 0, close_delay
        self.context: ssl.SSLContext | None = None
        if tls is not None:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(*tls)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        scheme = "https" if tls else "http"
        self.endpoint = f"{scheme}://127.0.0.1:{self.sock.getsockname()[1]}/development"
        self.connections = 0
        #: Requests answered, on every connection.
        self.requests = 0
        #: Set each time the server has closed a connection after answering.
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        if self.context is not None:
            try:
                conn = self.context.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):  # the client refused our certificate
                conn.close()
                return
        with conn:
            buffer = b""
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                head, sep, rest = buffer.partition(b"\r\n\r\n")
                if not sep:
                    continue
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                if len(rest) < length:
                    continue
                buffer = rest[length:]
                self.requests += 1
                conn.sendall(self.answer)
                if self.close_after:
                    time.sleep(self.close_delay)
                    conn.close()
                    self.closed.set()
                    return


def _one(result: FanOutResult) -> PostOutcome:
    """The outcome of a fan-out to one connection."""
    if result.delivered:
        return PostOutcome.DELIVERED
    kinds = {"gone": PostOutcome.GONE, "too_large": PostOutcome.TOO_LARGE, "failed": PostOutcome.FAILED}
    return next(outcome for name, outcome in kinds.items() if getattr(result, name))


def scripted_post(
    answer: bytes, *, close: bool = False, posts: int = 2, via: str = "post"
) -> tuple[list[PostOutcome], int]:
    """``posts`` posts to a server that always answers ``answer``: lone posts (``via="post"``, a kept
    socket) or fan-outs to one connection (``"post_many"``, the event loop's connections)."""
    server = ScriptedServer(answer, close=close)
    try:
        gateway = make_gateway(server.endpoint, workers=1)
        if via == "post":
            outcomes = [gateway.post("A=", b"{}") for _ in range(posts)]
        else:
            outcomes = [_one(gateway.post_many(["A="], b"{}")) for _ in range(posts)]
        return outcomes, server.connections
    finally:
        server.sock.close()


#: The two ways a post goes out: alone on a kept socket, or in a fan-out on the event loop.
VIA = pytest.mark.parametrize("via", ["post", "post_many"])


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", PostOutcome.DELIVERED),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", PostOutcome.DELIVERED),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n",
            PostOutcome.DELIVERED,
        ),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 410 Gone\r\nContent-Length: 2\r\n\r\n{}", PostOutcome.GONE),
        (b"HTTP/1.1 413 Too Large\r\ncontent-length: 2\r\n\r\n{}", PostOutcome.TOO_LARGE),
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\n{}", PostOutcome.FAILED),
    ],
)
@VIA
def test_answers_are_framed_and_the_connection_reused(answer: bytes, outcome: PostOutcome, via: str) -> None:
    outcomes, connections = scripted_post(answer, via=via)
    assert outcomes == [outcome, outcome]
    assert connections == 1  # keep-alive: the second post reused the first one's connection


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000,
    ],
)
@VIA
def test_malformed_or_oversized_answers_fail_without_raising(answer: bytes, via: str) -> None:
    outcomes, connections = scripted_post(answer, posts=1, via=via)
    assert outcomes == [PostOutcome.FAILED]
    assert connections == 3  # transient: retried on a fresh connection each time


@VIA
def test_an_answer_that_ends_at_close_is_read_to_the_end_and_not_reused(via: str) -> None:
    outcomes, connections = scripted_post(b"HTTP/1.1 410 Gone\r\n\r\n{}", close=True, via=via)
    assert outcomes == [PostOutcome.GONE, PostOutcome.GONE]
    assert connections == 2
    outcomes, connections = scripted_post(
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", close=True, via=via
    )
    assert outcomes == [PostOutcome.DELIVERED, PostOutcome.DELIVERED]
    assert connections == 2


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_an_idle_connection_the_server_dropped_is_not_used_for_the_next_post() -> None:
    """As after a Lambda container thaws: the close is on the socket, unread (a lone post's
    kept socket, or a connection of a loop that runs only while a fan-out does)."""
    server = ScriptedServer(OK, close_delay=0.001)
    gateway = ConnectionGateway(  # no retry: a post on a dropped connection would fail
        server.endpoint,
        transport=transport(1),
        credentials=lambda: ReadOnlyCredentials("AKIDEXAMPLE", "secret", None),
        region="eu-west-1",
        retry=RetryPolicy(transient_attempts=1),
    )
    try:
        assert gateway.post("A=", b"{}") is PostOutcome.DELIVERED
        assert server.closed.wait(10)
        server.closed.clear()
        assert gateway.post("A=", b"{}") is PostOutcome.DELIVERED
        assert server.closed.wait(10)
        server.closed.clear()
        assert gateway.post_many(["A="], b"{}").delivered == 1  # a new connection: none on the loop yet
        assert server.closed.wait(10)
        assert gateway.post_many(["A="], b"{}").delivered == 1
        assert server.connections == 4
    finally:
        server.sock.close()


REQUEST = b"POST /development/@connections/A%3D HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"


def test_a_lone_post_with_no_time_left_sends_nothing_and_keeps_its_socket() -> None:
    server = ScriptedServer(OK)
    kept = transport(1)
    origin = ("http", "127.0.0.1", server.sock.getsockname()[1])
    try:
        assert kept.post(origin, REQUEST, 5.0).status == 200
        for no_time in (0.0, -1.0):
            with pytest.raises(HttpTimeout, match="no time left to send"):
                kept.post(origin, REQUEST, no_time)
        assert kept.post(origin, REQUEST, 5.0).status == 200
        assert (server.requests, server.connections) == (2, 1)  # the kept socket was left as it was
    finally:
        server.sock.close()


def test_a_post_on_the_loop_with_no_time_left_writes_nothing_on_its_kept_connection() -> None:
    server = ScriptedServer(OK)
    kept = transport(1)
    origin = ("http", "127.0.0.1", server.sock.getsockname()[1])

    async def posts() -> list[int]:
        statuses = [(await kept.send(origin, REQUEST, 5.0)).status]
        with pytest.raises(HttpTimeout, match="no time left to send"):
            await kept.send(origin, REQUEST, 0.0)
        statuses.append((await kept.send(origin, REQUEST, 5.0)).status)
        return statuses

    try:
        assert kept.run(posts()) == [200, 200]
        assert (server.requests, server.connections) == (2, 1)
    finally:
        server.sock.close()


class OutOfTurnServer:
    """Answers its first connection's request 410, then, on ``speak``, sends bytes nobody asked for
    on that idle connection (as a server timing it out with a 408) and records when the client
    hangs up on it; later connections are answered 200."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}/development"
        self.connections = 0
        self.speak = threading.Event()
        self.hung_up = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            first = self.connections == 1
            threading.Thread(target=self._serve, args=(conn, first), daemon=True).start()

    @staticmethod
    def _request(conn: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n{}" not in data:  # the gateway's posts here all carry "{}"
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        return True

    def _serve(self, conn: socket.socket, first: bool) -> None:
        with conn:
            try:
                if not first:
                    while self._request(conn):
                        conn.sendall(OK)
                    return
                self._request(conn)
                conn.sendall(b"HTTP/1.1 410 Gone\r\nContent-Length: 2\r\n\r\n{}")
                self.speak.wait(10)
                conn.sendall(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
                while conn.recv(65536):
                    pass
            except OSError:
                pass
            if first:
                self.hung_up.set()


def test_a_connection_the_server_speaks_on_out_of_turn_is_closed_quietly_and_not_reused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While a fan-out waits for its cleanups (its loop running), the server sends bytes on an
    idle connection: nothing asked for them, so the connection is closed and never reused."""
    server = OutOfTurnServer()
    gateway = make_gateway(server.endpoint, workers=1)
    heard: list[bool] = []

    def on_gone(connection_id: str) -> None:
        server.speak.set()
        heard.append(server.hung_up.wait(10))

    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            assert gateway.post_many(["G="], b"{}", on_gone=on_gone).gone == ["G="]
            assert heard == [True]  # the client hung up on the bytes nobody asked for
            assert gateway.post_many(["A="], b"{}").delivered == 1
        assert server.connections == 2
        assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    finally:
        server.sock.close()


@pytest.mark.parametrize(
    ("answer", "outcome", "connections"),
    [
        # bytes after the answer: the answer counts, the connection is not reused
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}XYZ", PostOutcome.DELIVERED, 2),
        # a token list with something like close in it is not close
        (b"HTTP/1.1 200 OK\r\nConnection: xclose\r\nContent-Length: 0\r\n\r\n", PostOutcome.DELIVERED, 1),
        # close is a token anywhere in the list
        (b"HTTP/1.1 200 OK\r\nConnection: te, close\r\nContent-Length: 0\r\n\r\n", PostOutcome.DELIVERED, 2),
    ],
    ids=["bytes after Content-Length", "xclose", "close among tokens"],
)
def test_a_connection_is_reused_only_when_its_answer_ends_cleanly(
    answer: bytes, outcome: PostOutcome, connections: int
) -> None:
    assert scripted_post(answer) == ([outcome, outcome], connections)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\n{}",
    ],
    ids=["Content-Length and chunked", "no CRLF after a chunk", "space before the colon"],
)
def test_ambiguous_framing_fails_the_post_and_its_connection(answer: bytes) -> None:
    outcomes, connections = scripted_post(answer, posts=1)
    assert outcomes == [PostOutcome.FAILED]
    assert connections == 3  # transient: retried on a fresh connection each time


def test_an_answer_over_the_body_cap_fails_and_closes_its_connection() -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000
    server = ScriptedServer(big)
    capped = transport(1, max_body=4096)
    origin = ("http", "127.0.0.1", server.sock.getsockname()[1])
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    try:
        for _ in range(2):
            with pytest.raises(ResponseTooLarge):
                capped.post(origin, request, 5.0)
        assert server.connections == 2  # the first was closed, not pooled
        assert transport(1, max_body=5000).post(origin, request, 5.0).body == b"x" * 5000
    finally:
        server.sock.close()


def test_connections_are_reused_whatever_their_descriptor_number() -> None:
    """Past descriptor 1024, where ``select`` cannot look: liveness is still checked."""
    padding = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        outcomes, connections = scripted_post(OK, posts=3)
    finally:
        for fd in padding:
            os.close(fd)
    assert outcomes == [PostOutcome.DELIVERED] * 3
    assert connections == 1


def _self_signed(tmp_path: Path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(certfile), str(keyfile)


def test_posts_over_tls_verify_the_server_certificate(tmp_path: Path) -> None:
    certfile, keyfile = _self_signed(tmp_path)
    server = ScriptedServer(OK, tls=(certfile, keyfile))
    try:
        trusting = ConnectionGateway(
            server.endpoint,
            transport=transport(2, ssl_context=ssl.create_default_context(cafile=certfile)),
            credentials=lambda: ReadOnlyCredentials("AKIDEXAMPLE", "secret", None),
            region="eu-west-1",
        )
        assert trusting.post_many(["A=", "B="], b"{}").delivered == 2
        assert trusting.post("C=", b"{}") is PostOutcome.DELIVERED
        assert trusting.post("D=", b"{}") is PostOutcome.DELIVERED
        assert server.connections <= 3  # keep-alive over TLS too: the fan-out's two, the lone posts' one
        # The default context (the system's trust store) does not trust a self-signed certificate.
        refusing = make_gateway(server.endpoint, workers=1)
        assert refusing.post("A=", b"{}") is PostOutcome.FAILED
        origin = ("https", "127.0.0.1", server.sock.getsockname()[1])
        with pytest.raises(HttpError, match="CERTIFICATE_VERIFY_FAILED"):
            refusing.transport.post(origin, b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 5.0)
    finally:
        server.sock.close()
