"""The reference backend: what docs/backend.md asks of a backend, for all four connection types, in memory.

For development and tests only, never a product. Tokens are HS256 JWTs signed
with a development secret (``POST /dev/token``). Its OpenAPI page (``/docs``)
documents what the proxy sends and expects, for the real backend's team.

- ``models``: the request and answer bodies (what ``/docs`` shows);
- ``memory_store``: bookings, chat threads, notifications and the feed;
- ``dependencies``: the store, the token checker and the push client, for ``Depends``;
- ``chat_routes``, ``booking_routes``, ``notification_routes``, ``feed_routes``:
  one ``APIRouter`` per connection type (its connect and message routes);
- ``local_only``: refuses another ``Host``, and other pages' ``Origin`` except for
  development tokens from pages on loopback (CORS);
- ``dev_routes``: development actions (tokens, status changes, notifications,
  feed items) that push to connected clients the way the real backend would,
  by invoking the proxy's ``push`` function through the Lambda Invoke API.
"""

from __future__ import annotations

from fastapi import FastAPI

from local_gateway.reference_backend import (
    booking_routes,
    chat_routes,
    dev_routes,
    feed_routes,
    notification_routes,
)
from local_gateway.reference_backend.dependencies import State
from local_gateway.reference_backend.dev_tokens import DevTokens
from local_gateway.reference_backend.lambda_push import LambdaPush
from local_gateway.reference_backend.local_only import LocalOnly
from local_gateway.reference_backend.memory_store import MemoryStore
from local_gateway.reference_backend.settings import BackendSettings
from local_gateway.trust import Trust

__all__ = ["BackendSettings", "create_app"]

DESCRIPTION = (
    "What the WebSocket proxy calls (docs/backend.md in the ws-proxy repository). "
    "Connect: 200 accepts the connection, "
    "401/403 reject it with the same status, other 4xx with that status, 5xx as 502. "
    "Message: the 200 answer is sent to the sender, or with `broadcast: true` to every "
    "connection of the channel; 401/403 and other 4xx become error frames. Tokens are "
    "development JWTs from `POST /dev/token`. The `/dev` routes exist for development only."
)


def create_app(settings: BackendSettings | None = None) -> FastAPI:
    """The FastAPI application with a fresh in-memory store."""
    settings = settings or BackendSettings()
    app = FastAPI(title="Reference chat backend", version="1.0", description=DESCRIPTION)
    app.state.backend = State(
        store=MemoryStore(),
        tokens=DevTokens(settings.secret),
        push=LambdaPush(settings),
    )
    app.include_router(dev_routes.router)
    app.include_router(chat_routes.user_router)
    app.include_router(chat_routes.router)
    app.include_router(booking_routes.router)
    app.include_router(notification_routes.router)
    app.include_router(feed_routes.router)
    app.add_middleware(LocalOnly, trust=Trust(settings.host))
    return app
