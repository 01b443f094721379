"""Loopback stand-ins for the benchmarks, each run in its own process.

``python -m bench.standin --delay 0.02`` serves, on 127.0.0.1 and an ephemeral
port (printed as ``READY <port>`` on stdout):

- ``POST /{stage}/@connections/{id}``: the Management API. Waits ``--delay``
  seconds (``await asyncio.sleep``), then answers 200. The stage ``instant``
  answers at once (CPU profiling without waiting).
- ``POST /api/...``: the backend. Answers at once with a small message payload;
  ``broadcast`` is true unless the request path contains ``/reply/``.
- ``GET /_stats``: posts answered so far and this process's CPU seconds, so the
  bench can check that the stand-in is never the bottleneck.

aiohttp keeps connections alive and the listening socket has a deep backlog, so
a fan-out of dozens of parallel posts measures the client, not the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from aiohttp import web

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


def build_app(delay: float) -> web.Application:
    stats: dict[str, Any] = {"posts": 0, "backend": 0}

    async def post_to_connection(request: web.Request) -> web.Response:
        await request.read()
        if request.match_info["stage"] != "instant" and delay > 0:
            await asyncio.sleep(delay)
        stats["posts"] += 1
        return web.Response(status=200)

    async def backend(request: web.Request) -> web.Response:
        await request.read()
        stats["backend"] += 1
        body = _REPLY if "/reply/" in request.path else _ANSWER
        return web.Response(status=200, body=body, content_type="application/json")

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response({**stats, "cpu": time.process_time(), "wall": time.monotonic()})

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/{stage}/@connections/{connection_id}", post_to_connection)
    app.router.add_post("/api/{tail:.*}", backend)
    app.router.add_get("/_stats", get_stats)
    return app


async def serve(delay: float, port: int) -> None:
    runner = web.AppRunner(build_app(delay), access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=BACKLOG)
    await site.start()
    server = site._server
    assert server is not None
    bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    sys.stdout.write(f"READY {bound}\n")
    sys.stdout.flush()
    # Stop when the parent goes away (stdin closes), whatever happens to it.
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds per Management API post")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.delay, args.port))


if __name__ == "__main__":
    main()
