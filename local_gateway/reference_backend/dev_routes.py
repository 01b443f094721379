"""Development actions: tokens, and changes that push to connected clients (``/dev/...``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from local_gateway.reference_backend.dependencies import BookingId, Push, Store, Tokens, UserId
from local_gateway.reference_backend.memory_store import now_iso
from local_gateway.reference_backend.models import (
    STATUS_CHANGES,
    FeedItemRequest,
    NotifyRequest,
    StatusRequest,
    TokenAnswer,
    TokenRequest,
)

router = APIRouter(prefix="/dev", tags=["development"])


def refused_change(booking_id: str, current: str, wanted: str, allowed: frozenset[str]) -> str:
    """Why a status change is refused, in one line."""
    if wanted == current:
        return f"booking {booking_id} is already {current}"
    if not allowed:
        return f"booking {booking_id} is {current}, which is final: it cannot become {wanted}"
    then = " or ".join(sorted(allowed))
    return f"booking {booking_id} is {current} and cannot become {wanted}; it can become {then}"


@router.post("/token", response_model=TokenAnswer)
def dev_token(request: TokenRequest, tokens: Tokens) -> TokenAnswer:
    """A development JWT for ``user_id`` (HS256), valid ``ttl_seconds`` (12 hours by default)."""
    token, expires_at = tokens.issue(request.user_id, request.ttl_seconds)
    return TokenAnswer(token=token, expires_at=expires_at)


@router.post(
    "/bookings/{booking_id}/status",
    responses={409: {"description": "the booking cannot change to that status from its current one"}},
)
def dev_booking_status(
    request: StatusRequest, booking_id: BookingId, store: Store, push: Push
) -> dict[str, Any]:
    """Change a booking's status and push ``booking_status`` to its ``booking`` connections.

    Only the changes in ``STATUS_CHANGES`` are made; any other is refused with 409 and why.
    """
    with store.lock:
        booking = store.booking(booking_id)
        allowed = STATUS_CHANGES[booking.status]
        if request.status not in allowed:
            raise HTTPException(409, refused_change(booking_id, booking.status, request.status, allowed))
        booking.status = request.status
        summary = booking.summary()
    payload = {"type": "booking_status", "booking_id": booking_id, "status": request.status}
    result = push({"channel": {"booking_id": booking_id}, "connection_type": "booking", "payload": payload})
    return {"booking": summary, "push": result}


@router.post("/users/{user_id}/notify")
def dev_notify(request: NotifyRequest, user_id: UserId, store: Store, push: Push) -> dict[str, Any]:
    """Store a notification for ``user_id`` and push it to their ``notification`` connections."""
    with store.lock:
        item = {"id": store.next_id(), "text": request.text, "created_at": now_iso(), "read": False}
        store.notifications.setdefault(user_id, []).append(item)
    payload = {"type": "notification", "notification": item}
    result = push({"channel": {"user_id": user_id}, "connection_type": "notification", "payload": payload})
    return {"notification": item, "push": result}


@router.post("/feed")
def dev_feed(request: FeedItemRequest, store: Store, push: Push) -> dict[str, Any]:
    """Add a feed item and push it to every ``feed`` connection."""
    with store.lock:
        item = {"id": store.next_id(), "title": request.title, "created_at": now_iso()}
        store.feed.append(item)
    result = push(
        {"channel": {"feed": True}, "connection_type": "feed", "payload": {"type": "feed_item", "item": item}}
    )
    return {"item": item, "push": result}
