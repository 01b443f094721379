"""``notification`` connections: a user's notifications, new ones as pushes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from local_gateway.reference_backend.dependencies import Store, Tokens
from local_gateway.reference_backend.models import ConnectAnswer, ConnectBody, MessageAnswer, MessageBody

router = APIRouter(prefix="/api/notifications/ws", tags=["notification"])


@router.post("/connect", response_model=ConnectAnswer, response_model_exclude_none=True)
def notifications_connect(request: ConnectBody, store: Store, tokens: Tokens) -> ConnectAnswer:
    """Answers ``user_id`` (the proxy's channel is ``user#{user_id}``) and the unread notifications."""
    user = tokens.user(request.token)
    with store.lock:
        items = list(store.notifications.get(user, []))
    unread = [i for i in items if not i["read"]]
    return ConnectAnswer(
        initial={"type": "notifications", "items": unread, "unread": len(unread)}, user_id=user
    )


@router.post("/message", response_model=MessageAnswer, response_model_exclude_none=True)
def notifications_message(request: MessageBody, store: Store, tokens: Tokens) -> dict[str, Any]:
    """``{"type": "mark_read"}`` marks every notification read."""
    user = tokens.user(request.token)
    if request.message.get("type") != "mark_read":
        raise HTTPException(400, 'notification connections only send {"type": "mark_read"}')
    with store.lock:
        for item in store.notifications.get(user, []):
            item["read"] = True
    return {"type": "notifications", "items": [], "unread": 0}
