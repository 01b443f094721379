"""Loopback stand-ins for the benchmarks, each run in its own process.

``python -m bench.standin --delay 0.02`` serves, on 127.0.0.1 and an ephemeral
port (printed as ``READY <port>`` on stdout):

- ``POST /{stage}/@connections/{id}``: the Management API. Answers 200 after
  ``--delay`` seconds (a timer on the event loop, no task per post). The stage
  ``instant`` answers at once (CPU profiling without waiting).
- ``POST /api/...``: the backend. Answers at once with a small message payload;
  ``broadcast`` is true unless the request path contains ``/reply/``; a path ending
  in ``/connect`` gets a connect answer instead (a short history and a read receipt).
- ``POST /2015-03-31/functions/{name}/invocations``: Lambda's Invoke API, answering
  202 (an asynchronous invocation accepted) at once.
- ``GET /_stats``: posts answered so far and this process's CPU seconds, so the
  bench can check that the stand-in is never the bottleneck.

``--tls CERTFILE KEYFILE`` serves the same over HTTPS.

A bare asyncio HTTP/1.1 server (keep-alive, backlog 4096): at a few tens of
microseconds of CPU per post it stays far below any client measured here, which
an aiohttp server (about 0.25 ms per post) did not at 128 posts in flight.
Requests are read by ``Content-Length``; nothing else (no chunked bodies) is
needed by the clients under test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time

BACKLOG = 4096
_ANSWER = json.dumps(
    {
        "type": "message",
        "message": {"id": 1, "body": "Hello", "sender": "user_1", "created_at": "2025-01-01T00:00:00Z"},
        "thread": {"booking_id": "b1", "unread": 0},
        "broadcast": True,
    }
).encode()
_REPLY = json.dumps({"type": "ack", "message": {"id": 1}}).encode()
_CONNECTED = json.dumps(
    {
        "initial": {
            "type": "history",
            "thread": {"booking_id": "b1"},
            "messages": [{"id": 1, "body": "Hello"}],
        },
        "receipt": {"type": "receipt", "last_read": 1},
    }
).encode()
_ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


def _json(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class Stats:
    posts = 0
    backend = 0
    connections = 0


class StandInProtocol(asyncio.Protocol):
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        Stats.connections += 1

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            length = 0
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                length = int(lower[at + 17 : stop if stop >= 0 else len(lower)])
            if len(buf) < end + 4 + length:
                return
            del buf[: end + 4 + length]
            self.answer(head.split(b" ", 2))

    def answer(self, request_line: list[bytes]) -> None:
        method, path = request_line[0], request_line[1]
        transport = self.transport
        assert transport is not None
        if method == b"POST" and b"/@connections/" in path:
            if self.delay > 0 and not path.startswith(b"/instant/"):
                self.loop.call_later(self.delay, self._posted, transport)
            else:
                self._posted(transport)
        elif method == b"POST" and path.startswith(b"/api/"):
            Stats.backend += 1
            if path.endswith(b"/connect"):
                transport.write(_json(_CONNECTED))
            else:
                transport.write(_json(_REPLY if b"/reply/" in path else _ANSWER))
        elif method == b"POST" and path.startswith(b"/2015-03-31/functions/"):
            transport.write(_ACCEPTED)
        elif method == b"GET" and path == b"/_stats":
            stats = {
                "posts": Stats.posts,
                "backend": Stats.backend,
                "connections": Stats.connections,
                "cpu": time.process_time(),
            }
            transport.write(_json(json.dumps({**stats, "wall": time.monotonic()}).encode()))
        else:
            transport.write(_NOT_FOUND)

    @staticmethod
    def _posted(transport: asyncio.Transport) -> None:
        Stats.posts += 1
        if not transport.is_closing():
            transport.write(_OK)


async def serve(delay: float, port: int, tls: list[str] | None = None) -> None:
    loop = asyncio.get_running_loop()
    context = None
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
    server = await loop.create_server(
        lambda: StandInProtocol(delay), "127.0.0.1", port, backlog=BACKLOG, reuse_address=True, ssl=context
    )
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"READY {bound}\n")
    sys.stdout.flush()
    # Stop when the parent goes away (stdin closes), whatever happens to it.
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()
    server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds per Management API post")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls", nargs=2, metavar=("CERTFILE", "KEYFILE"), help="serve HTTPS")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.delay, args.port, args.tls))


if __name__ == "__main__":
    main()
