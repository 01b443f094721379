"""The reference backend answers its own ``Host`` only, and other pages only for development tokens.

ASGI middleware over ``local_gateway.trust``: a ``Host`` that is not the
stack's is refused (403); a request with an ``Origin`` other than the
backend's own is refused (403), except ``POST /dev/token`` from a page on
loopback (any port), which gets CORS, preflight included: a frontend served
by any local dev server can fetch its development tokens, and nothing else.
"""

from __future__ import annotations

import json
from typing import Any

from local_gateway.trust import Trust

#: The one route pages of other (loopback) origins may call.
TOKEN_PATH = "/dev/token"

Scope = dict[str, Any]


class LocalOnly:
    def __init__(self, app: Any, trust: Trust) -> None:
        self.app = app
        self.trust = trust

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host")
        if not self.trust.host_allowed(host):
            await _refuse(send, self.trust.host_refusal(host))
            return
        origin = headers.get("origin")
        if origin is None or Trust.is_same_origin(origin, host):
            await self.app(scope, receive, send)
            return
        if scope["path"] != TOKEN_PATH or not self.trust.is_local_origin(origin):
            what = f"other pages may only get development tokens (POST {TOKEN_PATH}), from loopback"
            reason = Trust.origin_refusal(origin, what)
            await _refuse(send, reason)
            return
        cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS":
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        *cors,
                        (b"access-control-allow-methods", b"POST"),
                        (b"access-control-allow-headers", b"content-type"),
                        (b"access-control-max-age", b"600"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return

        async def with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        await self.app(scope, receive, with_cors)


async def _refuse(send: Any, reason: str) -> None:
    body = json.dumps({"detail": reason}).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
