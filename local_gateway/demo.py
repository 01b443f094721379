"""The demo page and its helpers (development only).

- ``GET /`` without an upgrade: the page; ``/static/...``: its files;
- ``GET /demo/config``: the stage and backend URL the page needs;
- ``/demo/api/dev/...``: forwards the page's development calls to the backend
  (same origin, no CORS).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"


class DemoSite:
    def __init__(self, *, stage: str, backend_url: str) -> None:
        self.stage = stage
        self.backend_url = backend_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_static("/static/", STATIC_DIR)
        router.add_get("/demo/config", self.config)
        router.add_route("*", "/demo/api/{path:.+}", self.forward)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    async def config(self, request: web.Request) -> web.Response:
        return web.json_response({"stage": self.stage, "backend_url": self.backend_url})

    async def forward(self, request: web.Request) -> web.Response:
        """Forward the page's development calls (``dev/...``) to the backend, same origin."""
        path = request.match_info["path"]
        if not path.startswith("dev/") or ".." in path:
            raise web.HTTPNotFound(text="only the backend's dev/ routes are forwarded\n")
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
