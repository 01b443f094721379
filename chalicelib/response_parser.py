"""A strict HTTP/1.1 response parser, fed the bytes as they arrive (no I/O of its own).

Strict because a keep-alive connection is reused: whatever the parser lets
through unnoticed becomes the start of the next answer. So the status line,
every header line and the framing are checked (RFC 9112), and anything that
could desynchronise the connection fails the response or, when the response
itself is sound, marks the connection as not reusable:

- a header name is a token: ``Content-Length : 2`` (space before the colon) and
  folded lines are refused;
- ``Content-Length`` is digits, repeated only with the same value; together with
  ``Transfer-Encoding`` it is refused; the only transfer coding read is ``chunked``;
- each chunk's data is followed by CRLF, the chunk size is hex digits;
- ``Connection`` is a list of tokens: ``close`` is a token, not a substring;
- bytes after the end of an answer: the answer stands, the connection is closed;
- the head is at most ``MAX_HEAD_BYTES``, the body at most the caller's cap
  (``ResponseTooLarge``).
"""

from __future__ import annotations

import re
from typing import NamedTuple

#: Bound on a response's status line, headers and trailers together.
MAX_HEAD_BYTES = 64 * 1024
#: Bound on a chunk-size line (size and extensions).
MAX_CHUNK_LINE = 1024

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TEXT = rb"[\t -~\x80-\xff]*"
#: A whole head (with its last CRLF): the status line, then header lines, each checked.
_HEAD_LINES = re.compile(
    rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?: " + _TEXT + rb")?\r\n((?:" + _TOKEN + rb":" + _TEXT + rb"\r\n)*)"
)
#: The headers that frame the answer (lower case).
_FRAMING = (b"content-length", b"transfer-encoding", b"connection")
_HEADER_LINE = re.compile(_TOKEN + rb":" + _TEXT)
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[\t -~\x80-\xff]*)?")
_HEAD, _FIXED, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class HttpError(Exception):
    """A request that got no usable answer: refused, reset, timed out, or a malformed answer."""


class HttpTimeout(HttpError):
    """The request's time ran out (connect, send or answer)."""


class ResponseTooLarge(HttpError):
    """The answer's body is over the transport's cap."""


class Response(NamedTuple):
    status: int
    body: bytes
    #: Whether the connection may carry another request.
    keep_alive: bool


class ResponseParser:
    """One response: ``feed`` the bytes received, then ``eof`` if the server closes first."""

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._buffer = bytearray()
        self._body = bytearray()
        self._state = _HEAD
        self._remaining = 0
        self._status = 0
        self._keep_alive = True
        self._scanned = 0  # how far the head has been searched for its end (fed a byte at a time)

    def feed(self, data: bytes) -> Response | None:
        """The response once complete, else None; ``HttpError`` if the bytes are not one."""
        if self._state == _DONE:
            raise HttpError("bytes after the answer")
        self._buffer += data
        buf = self._buffer
        while True:
            state = self._state
            if state in (_HEAD, _TRAILERS):
                end = buf.find(b"\r\n\r\n", self._scanned) if state == _HEAD else buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise HttpError("response head too large")
                    self._scanned = max(0, len(buf) - 3)
                    return None
                self._scanned = 0
                if state == _HEAD:
                    self._head(_HEAD_LINES.fullmatch(buf, 0, end + 2))  # with the last line's CRLF
                    del buf[: end + 4]
                else:
                    line = bytes(buf[:end])
                    del buf[: end + 2]
                    if not line:
                        self._state = _DONE
                    elif not _HEADER_LINE.fullmatch(line):
                        raise HttpError("malformed trailer line")
            elif state in (_FIXED, _CHUNK_DATA):
                take = min(self._remaining, len(buf))
                self._keep(buf[:take])
                del buf[:take]
                self._remaining -= take
                if self._remaining:
                    return None
                self._state = _DONE if state == _FIXED else _CHUNK_END
            elif state == _CHUNK_END:
                if len(buf) < 2:
                    return None
                if buf[:2] != b"\r\n":
                    raise HttpError("chunk data not followed by CRLF")
                del buf[:2]
                self._state = _CHUNK_SIZE
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_CHUNK_LINE:
                        raise HttpError("chunk size line too long")
                    return None
                match = _CHUNK_LINE.fullmatch(buf[:end])
                if not match:
                    raise HttpError("malformed chunk size")
                del buf[: end + 2]
                size = int(match.group(1), 16)
                self._check_size(len(self._body) + size)
                self._remaining = size
                self._state = _CHUNK_DATA if size else _TRAILERS
            elif state == _UNTIL_CLOSE:
                self._keep(buf)
                buf.clear()
                return None
            else:  # _DONE
                # Anything after the answer means the server and we disagree on framing.
                return Response(self._status, bytes(self._body), self._keep_alive and not buf)

    def eof(self) -> Response:
        """The server closed the connection: the response, if its body runs until close."""
        if self._state == _UNTIL_CLOSE:
            return Response(self._status, bytes(self._body), False)
        raise HttpError("connection closed before the answer was complete")

    def _head(self, match: re.Match[bytes] | None) -> None:
        if not match:
            raise HttpError("malformed status line or header line")
        code = int(match.group(2))
        keep_alive = match.group(1) == b"1"
        length: int | None = None
        chunked = False
        for line in match.group(3).lower().split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name not in _FRAMING:
                continue
            value = value.strip(b" \t")
            if name == b"content-length":
                if not value.isdigit() or len(value) > 18 or (length is not None and length != int(value)):
                    raise HttpError("malformed Content-Length")
                length = int(value)
            elif name == b"transfer-encoding":
                if chunked or value != b"chunked":
                    raise HttpError("unsupported Transfer-Encoding")
                chunked = True
            else:  # connection
                tokens = {token.strip(b" \t") for token in value.split(b",")}
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
        if code == 101:
            raise HttpError("unexpected protocol switch")
        if code < 200:  # an interim answer: the final one follows
            return
        if chunked and length is not None:
            raise HttpError("both Content-Length and Transfer-Encoding")
        self._status = code
        self._keep_alive = keep_alive
        if code in (204, 304):
            self._state = _DONE
        elif chunked:
            self._state = _CHUNK_SIZE
        elif length is not None:
            self._check_size(length)
            self._remaining = length
            self._state = _FIXED if length else _DONE
        else:
            self._keep_alive = False
            self._state = _UNTIL_CLOSE

    def _keep(self, data: bytearray) -> None:
        self._check_size(len(self._body) + len(data))
        self._body += data

    def _check_size(self, size: int) -> None:
        if size > self._max_body:
            raise ResponseTooLarge(f"response body over {self._max_body} bytes")
