"""The proxy's one HTTP client: keep-alive HTTP/1.1 connections driven by one asyncio loop.

Both the backend calls and the Management API posts go through it, with the
same rules:

- **one overall deadline per request**: the ``timeout`` given to ``send`` covers
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

The loop runs on a daemon thread of its own for the life of the container, so
many posts are in flight at once instead of threads contending for the GIL;
other threads call ``post`` (or ``run`` for a coroutine). A Lambda container is
frozen between invocations, loop and connections with it, so a warm invocation
reuses them.
"""

from __future__ import annotations

import asyncio
import select
import ssl
import threading
from collections.abc import Coroutine
from typing import Any

from chalicelib.response_parser import HttpError, HttpTimeout, Response, ResponseParser

#: The default cap on an answer's body (``MAX_RESPONSE_BYTES``).
DEFAULT_MAX_BODY = 4 * 1024 * 1024
#: An origin: scheme, host, port.
Origin = tuple[str, str, int]


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as it arrives."""

    def __init__(self, max_body: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._max_body = max_body
        self._parser: ResponseParser | None = None
        self._waiter: asyncio.Future[Response] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):
            raise TypeError("a stream transport is needed")
        self.transport = transport

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
        if self.transport is None:
            raise HttpError("not connected")
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
        if self.transport is not None:
            self.transport.abort()

    def reusable(self) -> bool:
        """Open, and nothing arrived while idle (a close from the server not yet seen by the loop).

        After a Lambda container thaws, the loop may run a request before it has read
        the FIN of a connection the server closed meanwhile: a zero-timeout ``poll`` of
        the socket (not ``select``, which fails past descriptor 1024) catches that, as
        urllib3's ``wait_for_read`` does, so the request goes out on a new connection.
        """
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return False
        sock = transport.get_extra_info("socket")
        if sock is None:
            return False
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        try:
            return not poller.poll(0)
        except OSError:
            return False


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
        self._idle: dict[Origin, list[_Connection]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            with self._lock:
                if self._loop is None:
                    new = asyncio.new_event_loop()
                    thread = threading.Thread(target=new.run_forever, name="http-loop", daemon=True)
                    thread.start()
                    self._thread, self._loop = thread, new
                loop = self._loop
        return loop

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coroutine`` on the loop and wait for its result (from any other thread)."""
        loop = self.loop
        if threading.current_thread() is self._thread:
            raise RuntimeError("Transport.run called from its own event loop thread")
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    def post(self, origin: Origin, data: bytes, timeout: float) -> Response:
        """``send`` from a thread outside the loop."""
        response: Response = self.run(self.send(origin, data, timeout))
        return response

    async def send(self, origin: Origin, data: bytes, timeout: float) -> Response:
        """One request (head and body in ``data``) on an idle or new connection; its answer or ``HttpError``.

        The request is never sent with no time left: a backend must not get a message nobody waits for.
        """
        if timeout <= 0:
            raise HttpTimeout("no time left to send")
        loop = asyncio.get_running_loop()
        expires = loop.time() + timeout
        idle = self._idle.setdefault(origin, [])
        connection: _Connection | None = None
        while idle and connection is None:
            candidate = idle.pop()
            if candidate.reusable():
                connection = candidate
            else:
                candidate.close()
        if connection is None:
            connection = await self._open(origin, min(self.connect_timeout, timeout))
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
        if tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        try:
            _, connection = await asyncio.wait_for(
                asyncio.get_running_loop().create_connection(
                    lambda: _Connection(self.max_body),
                    host,
                    port,
                    ssl=self._ssl if tls else None,
                    server_hostname=host if tls else None,
                ),
                max(timeout, 0.0),
            )
        except TimeoutError:
            raise HttpTimeout("connect: timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise HttpError(f"connect: {type(exc).__name__}: {exc}") from None
        return connection

    def close(self) -> None:
        """Close every idle connection and stop the loop thread (tests and scripts; Lambda never calls it)."""
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


def _expire(waiter: asyncio.Future[Response]) -> None:
    if not waiter.done():
        waiter.set_exception(HttpTimeout("timed out"))
