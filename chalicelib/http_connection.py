"""One keep-alive HTTP/1.1 connection on the event loop: a request written in one piece,
the answer's status line and framing headers parsed, bounds on what a server may send.
"""

from __future__ import annotations

import asyncio
import select

#: Bounds on what a server may send back (API Gateway's answers are a few hundred bytes).
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024


class HttpError(Exception):
    """A post that got no HTTP status: refused, reset, timed out, or a malformed answer."""


class HttpConnection(asyncio.Protocol):
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
