"""JSON over HTTP/1.1 to one base URL, each call bounded by one overall deadline.

A socket timeout bounds each read, not the call: a server that trickles a byte
just inside it can hold a call for ever. Here a watchdog shuts the call's
socket down when its deadline passes, whatever phase the call is in (connect,
send, headers, body), so ``post`` returns by the deadline. Connections are
kept alive in a small pool; one the server has closed while idle is dropped
before use, never sent on.
"""

from __future__ import annotations

import contextlib
import http.client
import queue
import select
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from chalicelib.deadline import Deadline

#: A connection attempt never takes longer than this, whatever the deadline.
CONNECT_TIMEOUT = 3.05


class DeadlineExceeded(Exception):
    """The call did not complete before its deadline (it was cut off)."""


class ConnectionFailed(Exception):
    """The server could not be reached, or broke the connection."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    content: bytes


class _Call:
    """One request on one connection, which the watchdog may cut off."""

    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        self._finished = False
        self.cut_off = False

    def cut(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.cut_off = True
            sock = self.conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def finish(self) -> bool:
        """Mark the call complete; False if the watchdog cut it off first."""
        with self._lock:
            self._finished = True
            return not self.cut_off


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle kept-alive connection was closed by the server (readable at EOF)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class HttpClient:
    def __init__(self, base_url: str, *, pool_size: int = 10, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._base_path = parts.path
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self._idle: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue(maxsize=pool_size)
        self._ssl = ssl.create_default_context() if self._https else None

    def _new_connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._ssl is not None:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _take(self, deadline: Deadline) -> http.client.HTTPConnection:
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return self._new_connection(min(CONNECT_TIMEOUT, deadline.remaining()))
            if _dropped(conn):
                conn.close()
                continue
            return conn

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        try:
            self._idle.put_nowait(conn)
        except queue.Full:
            conn.close()

    def post(self, path: str, body: bytes, deadline: Deadline) -> HttpResponse:
        """POST ``body`` to ``path``; the answer, or ``DeadlineExceeded`` / ``ConnectionFailed``."""
        if deadline.expired():
            raise DeadlineExceeded("no time left to call")
        conn = self._take(deadline)
        call = _Call(conn)
        watchdog = threading.Timer(deadline.remaining(), call.cut)
        watchdog.daemon = True
        watchdog.start()
        try:
            if conn.sock is None:
                conn.timeout = min(CONNECT_TIMEOUT, max(0.001, deadline.remaining()))
                conn.connect()
            if conn.sock is None:
                raise ConnectionFailed("no socket after connect")
            conn.sock.settimeout(max(0.001, deadline.remaining()))  # each read; the watchdog bounds the call
            conn.request("POST", self._base_path + path, body=body, headers=self._headers)
            response = conn.getresponse()
            content = response.read()
        except (OSError, http.client.HTTPException) as exc:
            watchdog.cancel()
            call.finish()
            conn.close()
            if call.cut_off or deadline.expired() or isinstance(exc, TimeoutError):
                raise DeadlineExceeded("the call did not complete in time") from exc
            raise ConnectionFailed(type(exc).__name__) from exc
        watchdog.cancel()
        if not call.finish() or response.will_close:
            conn.close()
        else:
            self._give_back(conn)
        return HttpResponse(response.status, content)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
