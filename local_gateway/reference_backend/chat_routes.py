"""``chat`` connections: a booking's message thread, and the user-level chat socket."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from local_gateway.reference_backend.dependencies import BookingId, Store, Tokens
from local_gateway.reference_backend.memory_store import Booking, MemoryStore, now_iso
from local_gateway.reference_backend.models import (
    ConnectAnswer,
    ConnectBody,
    MessageAnswer,
    MessageBody,
    ParticipantsAnswer,
    UserConnectBody,
)
from local_gateway.reference_backend.settings import HISTORY_LENGTH, MAX_BODY_CHARS, MAX_MISSED_MESSAGES

router = APIRouter(prefix="/api/chat/ws/{booking_id}", tags=["chat"])
user_router = APIRouter(prefix="/api/chat/ws", tags=["chat"])


@user_router.post("/connect", response_model=ConnectAnswer, response_model_exclude_none=True)
def chat_user_connect(request: UserConnectBody, store: Store, tokens: Tokens) -> ConnectAnswer:
    """A user-level chat socket: who it is, and the user's conversations with their unread counts."""
    user = tokens.user(request.token)
    with store.lock:
        conversations = [
            {**booking.thread(), "status": booking.status, "unread": booking.unread(user)}
            for booking in store.bookings.values()
            if user in booking.participants
        ]
    return ConnectAnswer(initial={"type": "conversations", "conversations": conversations}, user_id=user)


@router.post("/participants", response_model=ParticipantsAnswer)
def chat_participants(booking_id: BookingId, store: Store) -> ParticipantsAnswer:
    """The booking's parties, whose user-level sockets its broadcasts also reach."""
    with store.lock:
        return ParticipantsAnswer(user_ids=list(store.booking(booking_id).participants))


def history(booking: Booking, since: int | None) -> dict[str, Any]:
    """The thread's messages after ``since`` (a resuming client), else its last HISTORY_LENGTH.

    A ``since`` past the last message id is a cursor from before a restart (ids start
    over): that client gets the whole recent history, without ``since``, and replaces its view.
    """
    frame: dict[str, Any] = {"type": "history", "thread": booking.thread()}
    last_id = booking.messages[-1]["id"] if booking.messages else 0
    if since is not None and since <= last_id:
        missed = [m for m in booking.messages if m["id"] > since]
        if len(missed) <= MAX_MISSED_MESSAGES:
            return {**frame, "since": since, "messages": missed}
    return {**frame, "messages": booking.messages[-HISTORY_LENGTH:]}


@router.post("/connect", response_model=ConnectAnswer, response_model_exclude_none=True)
def chat_connect(request: ConnectBody, booking_id: BookingId, store: Store, tokens: Tokens) -> ConnectAnswer:
    """History first (only what the client missed when it says ``since``), then a read receipt;
    401 without a valid token."""
    user = tokens.user(request.token)
    with store.lock:
        booking = store.booking(booking_id)
        booking.join(user)
        unread = booking.unread(user)
        last_id = booking.messages[-1]["id"] if booking.messages else 0
        booking.last_read[user] = last_id
        initial = history(booking, request.since)
    receipt = {
        "type": "receipt",
        "thread_id": f"booking-{booking_id}",
        "user_id": user,
        "connection_id": request.connection_id,
        "last_read_message_id": last_id,
        "unread": unread,
    }
    return ConnectAnswer(initial=initial, receipt=receipt, user_id=user)


@router.post("/message", response_model=MessageAnswer, response_model_exclude_none=True)
def chat_message(request: MessageBody, booking_id: BookingId, store: Store, tokens: Tokens) -> dict[str, Any]:
    """``{"body": ...}`` posts a message, ``{"type": "reaction", "emoji", "message_id"}`` toggles a
    reaction (both broadcast); ``{"type": "read", "message_id"}`` answers a receipt to the sender."""
    user = tokens.user(request.token)
    frame = request.message
    kind = frame.get("type", "message")
    with store.lock:
        booking = store.booking(booking_id)
        if kind == "message":
            return _post(store, booking, user, frame)
        if kind == "reaction":
            return _react(booking, user, frame)
        if kind == "read":
            return _read(booking, user, frame)
    raise HTTPException(400, f"unknown message type {kind!r}")


def _post(store: MemoryStore, booking: Booking, user: str, frame: dict[str, Any]) -> dict[str, Any]:
    body = frame.get("body")
    if not isinstance(body, str) or not body.strip():
        raise HTTPException(400, "a message needs a non-empty body")
    if len(body) > MAX_BODY_CHARS:
        raise HTTPException(400, f"a message body is at most {MAX_BODY_CHARS} characters")
    message: dict[str, Any] = {
        "id": store.next_id(),
        "thread_id": booking.thread_id,
        "user_id": user,
        "body": body,
        "created_at": now_iso(),
        "reactions": {},
    }
    client_id = frame.get("client_id")
    if isinstance(client_id, (str, int)):
        message["client_id"] = client_id
    booking.messages.append(message)
    booking.join(user)
    return {
        "type": "message",
        "message": message,
        "thread": booking.thread(),
        "broadcast": True,
        "recipients": list(booking.participants),  # their user-level sockets get it too
    }


def _react(booking: Booking, user: str, frame: dict[str, Any]) -> dict[str, Any]:
    emoji = frame.get("emoji")
    message_id = frame.get("message_id")
    if not isinstance(emoji, str) or not 1 <= len(emoji) <= 16:
        raise HTTPException(400, "a reaction needs an emoji")
    target = next((m for m in booking.messages if m["id"] == message_id), None)
    if target is None:
        raise HTTPException(404, f"there is no message {message_id} in this booking")
    users = target["reactions"].setdefault(emoji, [])
    if user in users:
        users.remove(user)
    else:
        users.append(user)
    if not users:
        del target["reactions"][emoji]
    return {
        "type": "reaction",
        "message_id": message_id,
        "emoji": emoji,
        "user_id": user,
        "reactions": target["reactions"],
        "broadcast": True,
        "recipients": list(booking.participants),
    }


def _read(booking: Booking, user: str, frame: dict[str, Any]) -> dict[str, Any]:
    message_id = frame.get("message_id")
    if not isinstance(message_id, int):
        raise HTTPException(400, "a read receipt needs a message_id")
    booking.last_read[user] = max(booking.last_read.get(user, 0), message_id)
    return {
        "type": "receipt",
        "thread_id": booking.thread_id,
        "user_id": user,
        "last_read_message_id": booking.last_read[user],
    }
