"""``booking`` connections: a booking's status, and its changes as ``booking_status`` pushes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from local_gateway.reference_backend.dependencies import BookingId, Store, Tokens
from local_gateway.reference_backend.models import ConnectAnswer, ConnectBody, MessageAnswer, MessageBody

router = APIRouter(prefix="/api/ws/bookings/{booking_id}", tags=["booking"])


@router.post("/connect", response_model=ConnectAnswer, response_model_exclude_none=True)
def booking_connect(
    request: ConnectBody, booking_id: BookingId, store: Store, tokens: Tokens
) -> ConnectAnswer:
    """The booking's current status first; later changes arrive as ``booking_status`` pushes."""
    user = tokens.user_for(request.token)
    with store.lock:
        summary = store.booking(booking_id).summary()
    return ConnectAnswer(initial={"type": "booking", "booking": summary}, user_id=user)


@router.post("/message", response_model=MessageAnswer, response_model_exclude_none=True)
def booking_message(
    request: MessageBody, booking_id: BookingId, store: Store, tokens: Tokens
) -> dict[str, Any]:
    """``{"type": "status"}`` answers the booking's status to the sender."""
    tokens.user_for(request.token)
    if request.message.get("type") != "status":
        raise HTTPException(400, 'booking connections only ask {"type": "status"}')
    with store.lock:
        summary = store.booking(booking_id).summary()
    return {"type": "booking", "booking": summary}
