"""``feed`` connections: the latest items; no connect route (the proxy calls none for feed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from local_gateway.reference_backend.dependencies import Store, Tokens
from local_gateway.reference_backend.models import MessageAnswer, MessageBody
from local_gateway.reference_backend.settings import HISTORY_LENGTH

router = APIRouter(prefix="/api/ws/items-feed", tags=["feed"])


@router.post("/message", response_model=MessageAnswer, response_model_exclude_none=True)
def feed_message(request: MessageBody, store: Store, tokens: Tokens) -> dict[str, Any]:
    """Any frame answers the latest items; a token is optional, but a bad one is 401."""
    tokens.user_for(request.token, required=False)
    with store.lock:
        items = store.feed[-HISTORY_LENGTH:]
    return {"type": "feed", "items": items}
