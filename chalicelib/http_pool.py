"""HttpPool: keep-alive HTTP/1.1 connections driven by one asyncio event loop.

The loop runs on a thread of its own for the life of the container, so many
posts are in flight at once instead of threads contending for the GIL. A request
is written in one piece; of the answer only the status line and the framing
headers are parsed (``HttpConnection``), with bounds on what a server may send.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Coroutine
from typing import Any

from chalicelib.http_connection import HttpConnection, HttpError

logger = logging.getLogger(__name__)


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
        self._idle: dict[tuple[str, str, int], list[HttpConnection]] = {}
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
            except ImportError:  # not shipped: the system's CAs (Lambda's image has them)
                context = ssl.create_default_context()
            self._ssl = context
        return self._ssl

    async def send(self, origin: tuple[str, str, int], head: bytes, body: bytes, timeout: float) -> int:
        """One request on an idle or new connection to ``origin``; its status, or ``HttpError``."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        idle = self._idle.setdefault(origin, [])
        connection: HttpConnection | None = None
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
                        HttpConnection,
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
