"""The demo page and its helpers (development only).

- ``GET /`` without an upgrade: the page; ``/static/...``: its files;
- ``GET /demo/config``: the stage and backend URL the page needs;
- ``POST /demo/api/dev/...``: forwards the page's development calls to the backend
  (same origin, no CORS): only the routes in ``DEMO_ROUTES``, matched on the
  path decoded until it no longer changes, so no encoding reaches anything else.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from urllib.parse import unquote

import aiohttp
from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: The client module (client/src), which the demo page imports from /client/.
CLIENT_DIR = Path(__file__).resolve().parent.parent / "client" / "src"
#: Where the client module is served; pages on loopback may load it from other origins (``trust``).
CLIENT_PREFIX = "/client/"
FORWARD_PREFIX = "/demo/api/"
_ID = r"[A-Za-z0-9_-]{1,64}"
#: The backend's development routes the page may call (all POST); nothing else is forwarded.
DEMO_ROUTES = tuple(
    re.compile(pattern)
    for pattern in (
        r"dev/token",
        rf"dev/bookings/{_ID}/status",
        rf"dev/users/{_ID}/notify",
        r"dev/feed",
    )
)
#: How many rounds of percent-decoding a path may need; one still encoded after that is refused.
_DECODE_ROUNDS = 3


def forwarded_path(method: str, raw_path: str) -> str | None:
    """The backend path for a request to ``FORWARD_PREFIX + ...``, or None when it is not forwarded.

    ``raw_path`` is the path as it came on the wire (no query). It is decoded
    until decoding changes nothing (``%252e`` -> ``%2e`` -> ``.``), normalised,
    and must then be exactly one of ``DEMO_ROUTES``, whose characters need no
    encoding: what the backend receives is what was checked.
    """
    if method != "POST" or not raw_path.startswith(FORWARD_PREFIX):
        return None
    path = raw_path[len(FORWARD_PREFIX) :]
    for _ in range(_DECODE_ROUNDS):
        decoded = unquote(path, errors="strict")
        if decoded == path:
            break
        path = decoded
    else:
        return None
    if posixpath.normpath(path) != path:
        return None
    return path if any(route.fullmatch(path) for route in DEMO_ROUTES) else None


class DemoSite:
    def __init__(self, *, stage: str, backend_url: str) -> None:
        self.stage = stage
        self.backend_url = backend_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_static("/static/", STATIC_DIR)
        router.add_static(CLIENT_PREFIX, CLIENT_DIR)
        router.add_get("/favicon.ico", self.favicon)
        router.add_get("/demo/config", self.config)
        router.add_route("*", "/demo/api/{path:.+}", self.forward)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    async def favicon(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "favicon.ico")

    async def config(self, request: web.Request) -> web.Response:
        return web.json_response({"stage": self.stage, "backend_url": self.backend_url})

    async def forward(self, request: web.Request) -> web.Response:
        """Forward the page's development calls (``DEMO_ROUTES``) to the backend, same origin."""
        try:
            path = forwarded_path(request.method, request.raw_path.split("?", 1)[0])
        except UnicodeDecodeError:
            path = None
        if path is None:
            raise web.HTTPNotFound(
                text="only the backend's development routes the demo calls are forwarded\n"
            )
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        body = await request.read()
        try:
            async with self._session.request(
                request.method,
                f"{self.backend_url}/{path}",
                data=body or None,
                headers={"Content-Type": request.headers.get("Content-Type", "application/json")},
            ) as upstream:
                content = await upstream.read()
                return web.Response(
                    status=upstream.status,
                    body=content,
                    content_type=upstream.content_type or "application/json",
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return web.json_response(
                {"detail": f"the backend is unreachable: {type(exc).__name__}"}, status=502
            )
