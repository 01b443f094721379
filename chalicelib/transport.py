"""The proxy's one HTTP client: keep-alive HTTP/1.1 connections, one request or many at once.

Both the backend calls and the Management API posts go through it, with the
same rules:

- **one overall deadline per request**: the ``timeout`` given covers
  connecting, writing and reading the whole answer; a server that trickles bytes
  cannot hold a request past it (``HttpTimeout``); connecting alone takes at
  most ``connect_timeout``;
- **one TLS policy**: certificates are verified against the system's trust store
  (``ssl.create_default_context()``, which also honours ``SSL_CERT_FILE``);
  docs/architecture.md says why;
- **one error vocabulary**: ``HttpError`` for any request that got no usable
  answer, ``HttpTimeout`` and ``ResponseTooLarge`` among them
  (``chalicelib.response_parser``);
- **a body cap on every answer** (``max_body``): a bigger answer fails and its
  connection is closed, whatever the server sends after.

``post`` sends one request and blocks for its answer on a kept socket: no event
loop, the least CPU for the calls a handler makes one at a time (DynamoDB, the
backend, Lambda, a lone Management API post). Many requests at once (a fan-out) are coroutines awaiting
``send``, run by ``run`` on the calling thread's own asyncio loop: many posts in
flight on one loop instead of threads contending for the GIL, and no thread ever
waits on another's loop (a fan-out's cleanups, on other threads while it awaits
them, call ``post``). A Lambda container is frozen between invocations, loops
and connections with it, so a warm invocation reuses them; a connection the
server closed meanwhile is noticed before it is used (``_quiet``).
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import threading
import time
from collections.abc import Coroutine
from typing import Any, cast
from urllib.parse import urlsplit

from chalicelib.response_parser import HttpError, HttpTimeout, Response, ResponseParser

#: The default cap on an answer's body (``MAX_RESPONSE_BYTES``).
DEFAULT_MAX_BODY = 4 * 1024 * 1024
#: An origin: scheme, host, port.
Origin = tuple[str, str, int]
_PORTS = {"http": 80, "https": 443}


def address(url: str) -> tuple[Origin, str, str]:
    """A URL's origin, its path (no trailing slash) and its ``Host`` header as sent (and
    signed): the port only when it is not the scheme's."""
    parts = urlsplit(url.rstrip("/"))
    scheme, name, port = parts.scheme, parts.hostname, parts.port
    if scheme not in _PORTS or not name:
        raise ValueError(f"not an http(s) URL: {url!r}")
    host = f"[{name}]" if ":" in name else name  # an IPv6 literal
    if port is not None and port != _PORTS[scheme]:
        host = f"{host}:{port}"
    return (scheme, name, port or _PORTS[scheme]), parts.path, host


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as it arrives."""

    transport: asyncio.Transport  # set before ``create_connection`` answers the connection

    def __init__(self, max_body: int) -> None:
        self.closed = False
        self._max_body = max_body
        self._parser: ResponseParser | None = None
        self._waiter: asyncio.Future[Response] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._parser is not None:
            try:
                self._settle(self._parser.eof())  # a body that runs until close ends here
            except HttpError as error:
                self._settle(HttpError(f"{error}: {exc}") if exc else error)

    def data_received(self, data: bytes) -> None:
        if self._parser is None:  # nothing asked: a server talking out of turn
            self.close()
            return
        try:
            response = self._parser.feed(data)
        except HttpError as exc:
            self._settle(exc)
            self.close()
            return
        if response is not None:
            self._settle(response)

    def request(self, data: bytes) -> asyncio.Future[Response]:
        self._waiter = asyncio.get_running_loop().create_future()
        self._parser = ResponseParser(self._max_body)
        self.transport.write(data)
        return self._waiter

    def _settle(self, outcome: Response | HttpError) -> None:
        waiter, self._waiter, self._parser = self._waiter, None, None
        if waiter is None or waiter.done():
            return
        if isinstance(outcome, Response):
            waiter.set_result(outcome)
        else:
            waiter.set_exception(outcome)

    def close(self) -> None:
        self.closed = True
        self.transport.abort()

    def reusable(self) -> bool:
        """Open, and nothing arrived while idle (a close from the server not yet seen by the loop)."""
        if self.closed or self.transport.is_closing():
            return False
        sock = self.transport.get_extra_info("socket")
        return sock is not None and _quiet(sock)


class Transport:
    """Keep-alive HTTP/1.1 connections per origin, at most ``idle_per_origin`` kept idle."""

    def __init__(
        self,
        idle_per_origin: int,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        connect_timeout: float = 2.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.idle_per_origin = max(idle_per_origin, 1)
        self.max_body = max_body
        self.connect_timeout = connect_timeout
        self._ssl = ssl_context
        # idle connections by loop and origin: a connection belongs to the loop that opened it
        self._idle: dict[tuple[asyncio.AbstractEventLoop, Origin], list[_Connection]] = {}
        self._sockets: dict[Origin, list[socket.socket]] = {}  # ``post``'s, shared by every thread
        self._local = threading.local()
        self._loops: list[asyncio.AbstractEventLoop] = []
        self._lock = threading.Lock()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coroutine`` to its end on this thread's loop (not from a coroutine on it)."""
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None or loop.is_closed():
            loop = self._local.loop = asyncio.new_event_loop()
            with self._lock:
                self._loops.append(loop)
        elif loop.is_running():
            coroutine.close()
            raise RuntimeError("Transport.run called from a coroutine on its own loop")
        return loop.run_until_complete(coroutine)

    def post(self, origin: Origin, data: bytes, timeout: float) -> Response:
        """One request (head and body in ``data``) on an idle or new socket; its answer or ``HttpError``.

        The request is never sent with no time left: a backend must not get a message nobody waits for.
        """
        if timeout <= 0:
            raise HttpTimeout("no time left to send")
        expires = time.monotonic() + timeout
        idle = self._sockets.setdefault(origin, [])
        while True:
            try:
                sock = idle.pop()
            except IndexError:  # none idle (another thread may have taken the last): a new one
                sock = self._connect(origin, min(self.connect_timeout, timeout), expires)
                break
            if _quiet(sock):
                break
            sock.close()
        parser, response = ResponseParser(self.max_body), None
        try:
            sock.settimeout(_left(expires))
            sock.sendall(data)
            while response is None:
                sock.settimeout(_left(expires))
                chunk = sock.recv(65536)
                response = parser.feed(chunk) if chunk else parser.eof()
        except BaseException as exc:
            sock.close()
            if isinstance(exc, OSError):
                raise _failure(exc) from None
            raise
        if response.keep_alive and len(idle) < self.idle_per_origin:
            idle.append(sock)
        else:
            sock.close()
        return response

    def _connect(self, origin: Origin, timeout: float, expires: float) -> socket.socket:
        """A socket to ``origin``: connecting and the TLS handshake together within ``timeout``
        (as on the loop), and never past ``expires``."""
        scheme, host, port = origin
        sock: socket.socket | None = None
        until = min(time.monotonic() + timeout, expires)
        try:
            sock = socket.create_connection((host, port), timeout=_left(until))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme != "https":
                return sock
            sock.settimeout(_left(until))
            return self._tls().wrap_socket(sock, server_hostname=host)
        except (HttpTimeout, OSError) as exc:  # ssl.SSLError and TimeoutError among them
            if sock is not None:
                sock.close()
            raise _failure(exc, "connect: ") from None

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def send(self, origin: Origin, data: bytes, timeout: float) -> Response:
        """``post`` from a coroutine: on a connection of the running loop, many in flight at once."""
        if timeout <= 0:
            raise HttpTimeout("no time left to send")
        loop = asyncio.get_running_loop()
        expires = loop.time() + timeout
        idle = self._idle.setdefault((loop, origin), [])
        while True:
            try:
                connection = idle.pop()
            except IndexError:
                connection = await self._open(origin, min(self.connect_timeout, timeout))
                break
            if connection.reusable():
                break
            connection.close()
        waiter = connection.request(data)
        timer = loop.call_at(expires, _expire, waiter)
        try:
            response = await waiter
        except BaseException:
            connection.close()
            raise
        finally:
            timer.cancel()
        if response.keep_alive and not connection.closed and len(idle) < self.idle_per_origin:
            idle.append(connection)
        else:
            connection.close()
        return response

    async def _open(self, origin: Origin, timeout: float) -> _Connection:
        scheme, host, port = origin
        tls = scheme == "https"
        try:
            _, connection = await asyncio.wait_for(
                asyncio.get_running_loop().create_connection(
                    lambda: _Connection(self.max_body),
                    host,
                    port,
                    ssl=self._tls() if tls else None,
                    server_hostname=host if tls else None,
                ),
                max(timeout, 0.0),
            )
        except OSError as exc:  # ssl.SSLError and TimeoutError among them
            raise _failure(exc, "connect: ") from None
        return connection

    def close(self) -> None:
        """Close every idle connection and every thread's loop (tests and scripts, nothing in flight)."""
        with self._lock:
            loops, self._loops = self._loops, []
        for pool in (self._idle, self._sockets):
            for idle in pool.values():
                for each in idle:
                    each.close()
            pool.clear()
        for loop in loops:
            if not loop.is_running():
                loop.run_until_complete(asyncio.sleep(0))  # the aborted sockets are closed
                loop.close()


def _failure(exc: Exception, doing: str = "") -> HttpError:
    """The ``HttpError`` for a socket call that failed or ran out of time."""
    if isinstance(exc, TimeoutError | HttpTimeout):
        return HttpTimeout(f"{doing}timed out")
    return HttpError(f"{doing}{type(exc).__name__}: {exc}")


def _left(expires: float) -> float:
    left = expires - time.monotonic()
    if left <= 0:
        raise HttpTimeout("timed out")
    return left


def _quiet(sock: socket.socket) -> bool:
    """Nothing arrived on an idle socket: no close from the server unread (as after a thaw).

    After a Lambda container thaws, a request may go out before the FIN of a connection
    the server closed meanwhile is read: a zero-timeout ``poll`` (not ``select``, which
    fails past descriptor 1024) catches that, as urllib3's ``wait_for_read`` does, so the
    request goes out on a new connection.
    """
    poller = select.poll()
    try:
        poller.register(sock.fileno(), select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


def _expire(waiter: asyncio.Future[Response]) -> None:
    if not waiter.done():
        waiter.set_exception(HttpTimeout("timed out"))
