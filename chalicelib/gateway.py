"""ConnectionGateway: posting to WebSocket connections through the Management API.

Fan-out is CPU-bound before it is latency-bound, so each post costs as little
client CPU as it can (``bench/RESULTS.md`` has the measurements behind each
choice):

- SigV4 is computed by string formatting with the signing key derived once per
  day (``tests/unit/test_signing.py`` holds it to botocore's own ``SigV4Auth``,
  byte for byte), the payload serialized and hashed once per fan-out;
- the posts go out over keep-alive HTTP/1.1 connections driven by one asyncio
  event loop on a thread of its own (``HttpPool``), many posts in flight at once
  instead of threads contending for the GIL; the request is written in one piece
  and the answer's status line and framing headers are all that is parsed
  (``_HttpConnection``). The loop and its connections live as long as the
  container, so a warm invocation reuses them.

Outcomes of one post (docs/protocol.md):

- 200 → ``DELIVERED``;
- 410 → ``GONE`` (the connection is closed, or its handshake is not complete);
- 413 → ``TOO_LARGE``;
- 429 (``LimitExceededException``), 5xx, timeouts and broken connections are
  retried with capped, jittered exponential backoff (like botocore's
  ``standard`` retry mode), then ``FAILED``;
- anything else (400, 403) → ``FAILED`` at once;
- ``UNSENT``: only with a deadline, when no attempt could start before it.

A deadline (a ``time.monotonic()`` value) bounds a post or a fan-out: no post is
started with less than ``RetryPolicy.min_post_seconds`` left, each attempt's
connect and read timeouts and each retry's sleep are cut to the time left, and a
fan-out answers the ids it never attempted in ``FanOutResult.unsent``.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import hashlib
import hmac
import inspect
import logging
import os
import random
import re
import select
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol
from urllib.parse import quote, urlsplit

from botocore.credentials import ReadOnlyCredentials

logger = logging.getLogger(__name__)

#: The one Management API call made here: ``POST @connections/{id}`` (execute-api:ManageConnections).
METHOD = "POST"
_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com")


class PostOutcome(enum.Enum):
    DELIVERED = "delivered"
    GONE = "gone"
    TOO_LARGE = "too_large"
    FAILED = "failed"
    #: Only with a deadline: not attempted, because it could not finish in time.
    UNSENT = "unsent"


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries for throttling (429) and transient failures (5xx, network)."""

    throttle_attempts: int = 6
    transient_attempts: int = 3
    base_delay: float = 0.05
    max_delay: float = 1.0
    #: With a deadline, an attempt (first or retry) starts only with this much time left.
    min_post_seconds: float = 0.1

    def delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff for retry number ``attempt`` (1-based)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * (2 ** (attempt - 1))))  # noqa: S311 - jitter


@dataclass
class FanOutResult:
    delivered: int = 0
    gone: list[str] = field(default_factory=list)
    too_large: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    duration_ms: float = 0.0
    #: Ids never attempted because the deadline came first (not in ``attempted``).
    unsent: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return self.delivered + len(self.gone) + len(self.too_large) + len(self.failed)

    def merge(self, other: FanOutResult) -> None:
        self.delivered += other.delivered
        self.gone += other.gone
        self.too_large += other.too_large
        self.failed += other.failed
        self.unsent += other.unsent


def region_for(endpoint: str, env: Any = os.environ) -> str:
    """The signing region: Lambda's own, else the one in an execute-api host name."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if env.get(name):
            return str(env[name])
    match = _REGION_IN_HOST.search(urlsplit(endpoint).netloc)
    return match.group(1) if match else "us-east-1"


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _signing_host(endpoint: str) -> str:
    """The ``host`` header as sent (and signed): the port only when it is not the default."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        return f"{host}:{parts.port}"
    return host


class RequestSigner(Protocol):
    """What the transport needs from a signer: the headers that sign a POST to ``path``."""

    def headers(self, path: str) -> dict[str, str]: ...


class Signer:
    """SigV4 for ``POST {stage}/@connections/{id}`` with one payload, for one fan-out.

    The same computation as botocore's ``SigV4Auth`` for this one request shape
    (signed headers ``content-type``, ``host``, ``x-amz-date`` and, with session
    credentials, ``x-amz-security-token``; the path encoded twice, as botocore does
    for every service but S3), without building an ``AWSRequest`` per post.
    """

    _keys: ClassVar[dict[tuple[str, str, str], bytes]] = {}

    def __init__(self, credentials: ReadOnlyCredentials, region: str, host: str, payload_hash: str) -> None:
        self._credentials = credentials
        self._region = region
        self._host = host
        self._payload_hash = payload_hash
        token = credentials.token
        self._signed = "content-type;host;x-amz-date" + (";x-amz-security-token" if token else "")
        self._token_line = f"x-amz-security-token:{token}\n" if token else ""

    def _key(self, date: str) -> bytes:
        cache_key = (self._credentials.secret_key, self._region, date)
        key = Signer._keys.get(cache_key)
        if key is None:
            key = hmac.new(
                f"AWS4{self._credentials.secret_key}".encode(), date.encode(), hashlib.sha256
            ).digest()
            for part in (self._region, "execute-api", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            Signer._keys = {cache_key: key}  # one day's key for the current credentials
        return key

    def headers(self, path: str, amz_date: str | None = None) -> dict[str, str]:
        """The headers that sign a POST of the payload to ``path`` (already URL-quoted once)."""
        if amz_date is None:
            amz_date = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        date = amz_date[:8]
        canonical = (
            f"{METHOD}\n{quote(path, safe='/~')}\n\ncontent-type:application/json\nhost:{self._host}\n"
            f"x-amz-date:{amz_date}\n{self._token_line}\n{self._signed}\n{self._payload_hash}"
        )
        scope = f"{date}/{self._region}/execute-api/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._key(date), to_sign.encode(), hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Amz-Date": amz_date,
            "Authorization": (
                f"AWS4-HMAC-SHA256 Credential={self._credentials.access_key}/{scope}, "
                f"SignedHeaders={self._signed}, Signature={signature}"
            ),
        }
        if self._credentials.token:
            headers["X-Amz-Security-Token"] = self._credentials.token
        return headers


# -- HTTP/1.1 over asyncio ------------------------------------------------------

#: Bounds on what a server may send back (API Gateway's answers are a few hundred bytes).
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024


class HttpError(Exception):
    """A post that got no HTTP status: refused, reset, timed out, or a malformed answer."""


class _HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request at a time, answers parsed as they arrive.

    Only what framing needs is read from the answer: the status line,
    ``Content-Length``, ``Transfer-Encoding: chunked`` and ``Connection: close``.
    The body is read and dropped. Anything malformed or oversized fails the
    request and closes the connection.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.keep_alive = True
        self._buffer = bytearray()
        self._waiter: asyncio.Future[int] | None = None
        self._status = 0
        self._state = 0  # 0 head, 1 fixed body, 2 chunk size, 3 chunk data, 4 trailers, 5 until close
        self._remaining = 0
        self._body = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):
            raise TypeError("a stream transport is needed")
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._state == 5:  # the body ran until the server closed: that is its end
                waiter.set_result(self._status)
            else:
                waiter.set_exception(HttpError(f"connection lost: {exc or 'closed by the server'}"))
        self._waiter = None

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost settles the waiter

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # nothing asked: a server talking out of turn
            self.close()
            return
        self._buffer += data
        try:
            self._parse()
        except HttpError as exc:
            waiter: asyncio.Future[int] | None = self._waiter  # _parse may have settled it
            self._waiter = None
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)
            self.close()

    # requests
    def request(self, head: bytes, body: bytes) -> asyncio.Future[int]:
        if self.transport is None:
            raise HttpError("not connected")
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._state = 0
        self._status = 0
        self._body = 0
        self._buffer.clear()
        self.transport.write(head + body)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def reusable(self) -> bool:
        """Open, and nothing arrived while idle (a close from the server not yet seen by the loop).

        After a Lambda container thaws, the loop may run a post before it has read the
        FIN of a connection the server closed meanwhile: a zero-timeout poll of the
        socket catches that, as urllib3's ``is_connection_dropped`` does, so the post
        goes out on a new connection instead of failing on the old one.
        """
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return False
        sock = transport.get_extra_info("socket")
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    # parsing
    def _parse(self) -> None:
        buf = self._buffer
        while self._waiter is not None:
            state = self._state
            if state == 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise HttpError("response head too large")
                    return
                head = bytes(buf[:end])
                del buf[: end + 4]
                self._head(head)
            elif state == 1:
                take = min(self._remaining, len(buf))
                del buf[:take]
                self._remaining -= take
                if self._remaining:
                    return
                self._done()
            elif state == 2:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > 1024:
                        raise HttpError("chunk size line too long")
                    return
                line = bytes(buf[:end]).split(b";", 1)[0].strip()
                del buf[: end + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    raise HttpError("malformed chunk size") from None
                if size < 0:
                    raise HttpError("malformed chunk size")
                self._count(size)
                self._remaining = size + 2  # the data and its CRLF
                self._state = 3 if size else 4
            elif state == 3:
                take = min(self._remaining, len(buf))
                del buf[:take]
                self._remaining -= take
                if self._remaining:
                    return
                self._state = 2
            elif state == 4:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise HttpError("trailers too large")
                    return
                del buf[: end + 2]
                if end == 0:  # the empty line after the trailers
                    self._done()
            else:  # 5: read until the server closes
                self._count(len(buf))
                buf.clear()
                return

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if (
            len(parts) < 2
            or not parts[0].startswith(b"HTTP/1.")
            or len(parts[1]) != 3
            or not parts[1].isdigit()
        ):
            raise HttpError("malformed status line")
        status = int(parts[1])
        length: int | None = None
        chunked = False
        keep_alive = parts[0] != b"HTTP/1.0"
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise HttpError("malformed header line")
            name = name.strip().lower()
            if name == b"content-length":
                value = value.strip()
                if not value.isdigit() or (length is not None and length != int(value)):
                    raise HttpError("malformed Content-Length")
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.strip().lower().endswith(b"chunked")
            elif name == b"connection":
                tokens = value.lower()
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
        if 100 <= status < 200:  # interim answer: the final one follows
            return
        self._status = status
        self.keep_alive = keep_alive
        if status in (204, 304):
            self._done()
        elif chunked:
            self._state = 2
        elif length is not None:
            self._count(length)
            self._remaining = length
            self._state = 1
            if not length:
                self._done()
        else:
            self.keep_alive = False
            self._state = 5

    def _count(self, size: int) -> None:
        self._body += size
        if self._body > MAX_BODY_BYTES:
            raise HttpError("response body too large")

    def _done(self) -> None:
        waiter, self._waiter = self._waiter, None
        self._state = 0
        if waiter is not None and not waiter.done():
            waiter.set_result(self._status)


class HttpPool:
    """Keep-alive HTTP/1.1 connections per origin, driven by one event loop on its own thread.

    The loop thread starts on first use and lives as long as the process (a
    daemon thread: a Lambda container is frozen between invocations, loop and
    connections with it). Calls from other threads go through ``run``.
    """

    def __init__(
        self,
        maxsize: int,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.maxsize = max(maxsize, 1)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: dict[tuple[str, str, int], list[_HttpConnection]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._ssl = ssl_context
        #: Connections opened so far (each a TCP and, for https, a TLS handshake).
        self.opened = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            with self._lock:
                if self._loop is None:
                    new = asyncio.new_event_loop()
                    thread = threading.Thread(target=new.run_forever, name="gateway-loop", daemon=True)
                    thread.start()
                    self._thread, self._loop = thread, new
                loop = self._loop
        return loop

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coroutine`` on the pool's loop and wait for its result (from any other thread)."""
        loop = self.loop
        if threading.current_thread() is self._thread:
            raise RuntimeError("HttpPool.run called from its own event loop thread")
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            try:
                import certifi

                context = ssl.create_default_context(cafile=certifi.where())
            except ImportError:  # pragma: no cover - certifi ships with requests
                context = ssl.create_default_context()
            self._ssl = context
        return self._ssl

    async def send(self, origin: tuple[str, str, int], head: bytes, body: bytes, timeout: float) -> int:
        """One request on an idle or new connection to ``origin``; its status, or ``HttpError``."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        idle = self._idle.setdefault(origin, [])
        connection: _HttpConnection | None = None
        while idle:
            candidate = idle.pop()
            if candidate.reusable():
                connection = candidate
                break
            candidate.close()
        if connection is None:
            scheme, host, port = origin
            try:
                _transport, connection = await asyncio.wait_for(
                    loop.create_connection(
                        _HttpConnection,
                        host,
                        port,
                        ssl=self._ssl_context() if scheme == "https" else None,
                        server_hostname=host if scheme == "https" else None,
                    ),
                    min(self.connect_timeout, timeout),
                )
            except (TimeoutError, OSError, ssl.SSLError) as exc:
                raise HttpError(f"connect: {type(exc).__name__}: {exc}") from None
            self.opened += 1
        if connection is None:
            raise HttpError("no connection")
        left = min(self.read_timeout, timeout - (loop.time() - started))
        waiter = connection.request(head, body)
        timer = loop.call_later(max(left, 0.0), _expire, waiter)
        try:
            status = await waiter
        except BaseException:
            connection.close()
            raise
        finally:
            timer.cancel()
        if connection.keep_alive and not connection.closed and len(idle) < self.maxsize:
            idle.append(connection)
        else:
            connection.close()
        return status

    def close(self) -> None:
        """Close every idle connection and stop the loop thread (tests; Lambda never calls it)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        def shutdown() -> None:
            for connections in self._idle.values():
                for connection in connections:
                    connection.close()
            self._idle.clear()
            loop.stop()

        loop.call_soon_threadsafe(shutdown)
        thread.join(5)
        loop.close()
        self._loop = self._thread = None


def _expire(waiter: asyncio.Future[int]) -> None:
    if not waiter.done():
        waiter.set_exception(HttpError("timed out"))


# -- Management API -------------------------------------------------------------

Sleep = Callable[[float], Awaitable[None] | None]


class ManagementApi:
    """The ``@connections`` API of one WebSocket API stage, over a shared pool."""

    def __init__(
        self,
        endpoint: str,
        *,
        pool: HttpPool,
        credentials: Callable[[], ReadOnlyCredentials],
        region: str,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        parts = urlsplit(self.endpoint)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint!r}")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._address = (parts.scheme, parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme])
        self._base_path = parts.path
        self._host = _signing_host(self.endpoint)
        self.pool = pool
        self._credentials = credentials
        self._region = region
        self._retry = retry
        self._sleep = sleep
        self._clock = clock

    def path(self, connection_id: str) -> str:
        quoted = quote(connection_id, safe="~")
        if quoted in (".", ".."):  # a dot segment would be normalized away: send it encoded
            quoted = quoted.replace(".", "%2E")
        return f"{self._base_path}/@connections/{quoted}"

    def url(self, connection_id: str) -> str:
        return f"{self._origin}{self.path(connection_id)}"

    def signer(self, data: bytes) -> RequestSigner:
        return Signer(self._credentials(), self._region, self._host, hashlib.sha256(data).hexdigest())

    def _head(self, signer: RequestSigner, path: str, length: int) -> bytes:
        lines = "".join(f"{name}: {value}\r\n" for name, value in signer.headers(path).items())
        head = f"{METHOD} {path} HTTP/1.1\r\nHost: {self._host}\r\n{lines}Content-Length: {length}\r\n\r\n"
        return head.encode()

    def _left(self, deadline: float | None) -> float:
        return float("inf") if deadline is None else deadline - self._clock()

    async def post_async(
        self, connection_id: str, data: bytes, signer: RequestSigner, deadline: float | None = None
    ) -> PostOutcome:
        """Post one frame to one connection on the pool's loop, retrying throttles and transient faults."""
        retry = self._retry
        if self._left(deadline) < retry.min_post_seconds:
            return PostOutcome.UNSENT
        path = self.path(connection_id)
        worst = self.pool.connect_timeout + self.pool.read_timeout
        throttled = transient = 0
        last = False
        while True:
            left = self._left(deadline)
            try:
                status = await self.pool.send(
                    self._address, self._head(signer, path, len(data)), data, min(worst, left)
                )
            except HttpError as exc:
                status, reason = 0, str(exc)
            else:
                reason = str(status)
            if status == 200:
                return PostOutcome.DELIVERED
            if status == 410:
                return PostOutcome.GONE
            if status == 413:
                logger.warning(
                    "post refused as too large", extra={"connection_id": connection_id, "bytes": len(data)}
                )
                return PostOutcome.TOO_LARGE
            if status == 429:
                throttled += 1
                if throttled >= retry.throttle_attempts:
                    return self._failed(connection_id, reason)
                attempt = throttled
            elif status == 0 or status >= 500:
                transient += 1
                if transient >= retry.transient_attempts:
                    return self._failed(connection_id, reason)
                attempt = transient
            else:
                return self._failed(connection_id, reason)
            delay = retry.delay(attempt)
            if deadline is not None:
                room = self._left(deadline) - retry.min_post_seconds
                if room <= 0 or last:
                    return self._failed(connection_id, f"{reason}; no time left to retry")
                if delay >= room:  # the backoff is cut to the time left: this is the last try
                    delay, last = room, True
            slept = self._sleep(delay)
            if slept is not None and inspect.isawaitable(slept):
                await slept
            if self._left(deadline) < retry.min_post_seconds:
                return self._failed(connection_id, f"{reason}; no time left to retry")

    def post(
        self,
        connection_id: str,
        data: bytes,
        signer: RequestSigner | None = None,
        *,
        deadline: float | None = None,
    ) -> PostOutcome:
        """``post_async`` from a thread outside the pool's loop."""
        outcome: PostOutcome = self.pool.run(
            self.post_async(connection_id, data, signer or self.signer(data), deadline)
        )
        return outcome

    @staticmethod
    def _failed(connection_id: str, reason: str) -> PostOutcome:
        logger.warning("post failed", extra={"connection_id": connection_id, "reason": reason})
        return PostOutcome.FAILED


class ConnectionGateway:
    """Posts frames to one connection or fans them out to many, ``workers`` posts in flight."""

    def __init__(self, api: ManagementApi, executor: Executor | None, workers: int) -> None:
        self.api = api
        self._executor = executor
        self._workers = max(workers, 1)

    @property
    def endpoint(self) -> str:
        return self.api.endpoint

    def post(self, connection_id: str, data: bytes, *, deadline: float | None = None) -> PostOutcome:
        return self.api.post(connection_id, data, deadline=deadline)

    def fan_out(
        self,
        connection_ids: Iterable[str],
        data: bytes,
        *,
        on_gone: Callable[[str], None] | None = None,
        deadline: float | None = None,
    ) -> FanOutResult:
        """Post ``data`` to every id, at most ``workers`` at once.

        ``on_gone`` runs (on the executor's threads) for each connection that
        answered 410, so stale items are removed while delivery goes on; the
        fan-out answers once every cleanup has finished. With ``deadline``, ids
        that could not be attempted in time come back in ``unsent``.
        """
        started = time.perf_counter()
        ids = list(connection_ids)
        if not ids:
            return FanOutResult()
        signer = self.api.signer(data)
        outcomes: list[PostOutcome] = self.api.pool.run(self._fan_out(ids, data, signer, on_gone, deadline))
        result = FanOutResult()
        for connection_id, outcome in zip(ids, outcomes, strict=True):
            if outcome is PostOutcome.DELIVERED:
                result.delivered += 1
            elif outcome is PostOutcome.GONE:
                result.gone.append(connection_id)
            elif outcome is PostOutcome.TOO_LARGE:
                result.too_large.append(connection_id)
            elif outcome is PostOutcome.UNSENT:
                result.unsent.append(connection_id)
            else:
                result.failed.append(connection_id)
        result.duration_ms = round((time.perf_counter() - started) * 1000, 1)
        return result

    async def _fan_out(
        self,
        ids: list[str],
        data: bytes,
        signer: RequestSigner,
        on_gone: Callable[[str], None] | None,
        deadline: float | None,
    ) -> list[PostOutcome]:
        loop = asyncio.get_running_loop()
        outcomes = [PostOutcome.UNSENT] * len(ids)
        cleanups: list[asyncio.Future[None]] = []
        post = self.api.post_async
        queue = iter(range(len(ids)))

        async def worker() -> None:
            for index in queue:
                outcome = await post(ids[index], data, signer, deadline)
                outcomes[index] = outcome
                if outcome is PostOutcome.GONE and on_gone is not None:
                    cleanups.append(loop.run_in_executor(self._executor, _cleanup, on_gone, ids[index]))

        workers = min(self._workers, len(ids))
        if workers == 1:
            await worker()
        elif workers > 1:
            await asyncio.gather(*(worker() for _ in range(workers)))
        if cleanups:
            await asyncio.gather(*cleanups)
        return outcomes


def _cleanup(on_gone: Callable[[str], None], connection_id: str) -> None:
    try:
        on_gone(connection_id)
    except Exception:  # a failed cleanup must not stop delivery; TTL is the net
        logger.exception("stale connection cleanup failed", extra={"connection_id": connection_id})


def new_pool(
    workers: int,
    *,
    connect_timeout: float = 2.0,
    read_timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
) -> HttpPool:
    """One keep-alive pool per container, as wide as the fan-out (``ssl_context``: certifi's CAs)."""
    return HttpPool(
        workers, connect_timeout=connect_timeout, read_timeout=read_timeout, ssl_context=ssl_context
    )
