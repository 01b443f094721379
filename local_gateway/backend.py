"""The reference backend: CONTRACT.md §2 for all four connection types, in memory.

For development and tests only, never a product. Tokens are HS256 JWTs signed
with a development secret (``POST /dev/token``). Its OpenAPI page (``/docs``)
documents what the proxy sends and expects, for the real backend's team.

The ``/dev/...`` actions push to connected clients the way the real backend
would: by invoking the proxy's ``push`` function through the Lambda Invoke API.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import jwt
from fastapi import FastAPI, HTTPException, Path
from pydantic import BaseModel, Field

DEV_SECRET = "ws-proxy-local-development-secret"  # not a secret: signs development tokens only
TOKEN_LIFETIME_SECONDS = 12 * 3600
HISTORY_LENGTH = 50
MAX_BODY_CHARS = 4000
BOOKING_STATUSES = ("pending", "confirmed", "checked_in", "completed", "cancelled")
_ID = r"^[A-Za-z0-9_-]{1,64}$"


@dataclass
class BackendSettings:
    secret: str = DEV_SECRET
    #: The Lambda Invoke endpoint for pushes (the local gateway's URL); None disables pushes.
    lambda_endpoint: str | None = None
    push_function_name: str = "ws-proxy-local-push"
    region: str = "us-east-1"


# -- the contract's request and answer bodies (what /docs shows) ----------------------


class ConnectRequest(BaseModel):
    """What the proxy posts on ``$connect``."""

    connection_id: str = Field(description="API Gateway's connection id")
    token: str | None = Field(
        default=None, description="the client's JWT, from ?token= or the bearer subprotocol"
    )


class MessageRequest(BaseModel):
    """What the proxy posts on ``$default``: the client's frame, unchanged."""

    connection_id: str
    message: dict[str, Any] = Field(description='the client\'s JSON object, e.g. {"body": "Hello"}')
    token: str | None = None


class ConnectAnswer(BaseModel):
    """200 accepts the connection; ``initial`` then ``receipt`` are sent to the client in that order."""

    initial: dict[str, Any] | None = Field(default=None, description="first frame, e.g. the chat history")
    receipt: dict[str, Any] | None = Field(default=None, description="second frame")
    user_id: str | None = Field(
        default=None, description="who connected; required for notification connections"
    )


class MessageAnswer(BaseModel):
    """The payload for the client. With ``broadcast: true`` every connection of the channel
    (same type, sender included) receives it; otherwise the sender only."""

    model_config = {"extra": "allow"}
    type: str
    broadcast: bool | None = None


class TokenRequest(BaseModel):
    user_id: str = Field(pattern=_ID, examples=["alice"])


class TokenAnswer(BaseModel):
    token: str


class StatusRequest(BaseModel):
    status: Literal["pending", "confirmed", "checked_in", "completed", "cancelled"]


class NotifyRequest(BaseModel):
    text: str = Field(min_length=1, max_length=500)


class FeedItemRequest(BaseModel):
    title: str = Field(min_length=1, max_length=200)


# -- the in-memory store ---------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Booking:
    booking_id: str
    status: str = "pending"
    messages: list[dict[str, Any]] = field(default_factory=list)
    participants: list[str] = field(default_factory=list)
    last_read: dict[str, int] = field(default_factory=dict)

    def thread(self) -> dict[str, Any]:
        return {
            "id": f"booking-{self.booking_id}",
            "booking_id": self.booking_id,
            "title": f"Booking {self.booking_id}",
            "participants": list(self.participants),
            "message_count": len(self.messages),
            "last_message_id": self.messages[-1]["id"] if self.messages else None,
        }

    def summary(self) -> dict[str, Any]:
        return {
            "booking_id": self.booking_id,
            "status": self.status,
            "thread_id": f"booking-{self.booking_id}",
        }


class Store:
    """Bookings, their chat threads, notifications and the feed; one lock for all."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bookings: dict[str, Booking] = {}
        self.notifications: dict[str, list[dict[str, Any]]] = {}
        self.feed: list[dict[str, Any]] = [{"id": 1, "title": "Welcome to the feed", "created_at": _now()}]
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    def booking(self, booking_id: str) -> Booking:
        """A booking, created on first use with a welcome message from its host."""
        booking = self.bookings.get(booking_id)
        if booking is None:
            booking = Booking(booking_id, participants=["host"])
            booking.messages.append(
                {
                    "id": self.next_id(),
                    "thread_id": f"booking-{booking_id}",
                    "user_id": "host",
                    "body": f"Welcome to booking {booking_id}! Check-in is from 3 pm.",
                    "created_at": _now(),
                    "reactions": {},
                }
            )
            self.bookings[booking_id] = booking
        return booking


# -- the application ---------------------------------------------------------------------


def create_app(settings: BackendSettings | None = None) -> FastAPI:
    settings = settings or BackendSettings()
    store = Store()
    lambda_client: list[Any] = []  # built on first push

    app = FastAPI(
        title="Reference chat backend",
        version="1.0",
        description=(
            "What the WebSocket proxy calls (CONTRACT.md §2). Connect: 200 accepts the connection, "
            "401/403 reject it with the same status, other 4xx with that status, 5xx as 502. "
            "Message: the 200 answer is sent to the sender, or with `broadcast: true` to every "
            "connection of the channel; 401/403 and other 4xx become error frames. Tokens are "
            "development JWTs from `POST /dev/token`. The `/dev` routes exist for development only."
        ),
    )

    def user_for(token: str | None, *, required: bool = True) -> str | None:
        if not token:
            if required:
                raise HTTPException(401, "a token is required")
            return None
        try:
            claims = jwt.decode(token, settings.secret, algorithms=["HS256"], options={"require": ["sub"]})
        except jwt.PyJWTError:
            raise HTTPException(401, "the token is invalid or expired") from None
        return str(claims["sub"])

    def push(event: dict[str, Any]) -> dict[str, Any]:
        """Invoke the proxy's push function (synchronously, to report what it delivered)."""
        if not settings.lambda_endpoint:
            return {"skipped": "no Lambda endpoint configured"}
        import json

        import boto3
        from botocore.config import Config

        if not lambda_client:
            lambda_client.append(
                boto3.client(
                    "lambda",
                    endpoint_url=settings.lambda_endpoint,
                    region_name=settings.region,
                    config=Config(retries={"max_attempts": 1}, read_timeout=60),
                )
            )
        response = lambda_client[0].invoke(
            FunctionName=settings.push_function_name,
            InvocationType="RequestResponse",
            Payload=json.dumps(event).encode("utf-8"),
        )
        result: dict[str, Any] = json.loads(response["Payload"].read() or b"{}")
        return result

    # -- development helpers --

    @app.post("/dev/token", response_model=TokenAnswer, tags=["development"])
    def dev_token(request: TokenRequest) -> TokenAnswer:
        """A development JWT for ``user_id`` (HS256, 12 hours)."""
        now = int(time.time())
        claims = {"sub": request.user_id, "iat": now, "exp": now + TOKEN_LIFETIME_SECONDS}
        return TokenAnswer(token=jwt.encode(claims, settings.secret, algorithm="HS256"))

    @app.post("/dev/bookings/{booking_id}/status", tags=["development"])
    def dev_booking_status(request: StatusRequest, booking_id: str = Path(pattern=_ID)) -> dict[str, Any]:
        """Change a booking's status and push ``booking_status`` to its ``booking`` connections."""
        with store.lock:
            booking = store.booking(booking_id)
            booking.status = request.status
            summary = booking.summary()
        payload = {"type": "booking_status", "booking_id": booking_id, "status": request.status}
        result = push(
            {"channel": {"booking_id": booking_id}, "connection_type": "booking", "payload": payload}
        )
        return {"booking": summary, "push": result}

    @app.post("/dev/users/{user_id}/notify", tags=["development"])
    def dev_notify(request: NotifyRequest, user_id: str = Path(pattern=_ID)) -> dict[str, Any]:
        """Store a notification for ``user_id`` and push it to their ``notification`` connections."""
        item = {"id": store.next_id(), "text": request.text, "created_at": _now(), "read": False}
        with store.lock:
            store.notifications.setdefault(user_id, []).append(item)
        payload = {"type": "notification", "notification": item}
        result = push(
            {"channel": {"user_id": user_id}, "connection_type": "notification", "payload": payload}
        )
        return {"notification": item, "push": result}

    @app.post("/dev/feed", tags=["development"])
    def dev_feed(request: FeedItemRequest) -> dict[str, Any]:
        """Add a feed item and push it to every ``feed`` connection."""
        item = {"id": store.next_id(), "title": request.title, "created_at": _now()}
        with store.lock:
            store.feed.append(item)
        result = push(
            {
                "channel": {"feed": True},
                "connection_type": "feed",
                "payload": {"type": "feed_item", "item": item},
            }
        )
        return {"item": item, "push": result}

    # -- chat --

    @app.post(
        "/api/chat/ws/{booking_id}/connect",
        response_model=ConnectAnswer,
        response_model_exclude_none=True,
        tags=["chat"],
    )
    def chat_connect(request: ConnectRequest, booking_id: str = Path(pattern=_ID)) -> ConnectAnswer:
        """History first, then a read receipt; 401 without a valid token."""
        user = user_for(request.token)
        assert user is not None
        with store.lock:
            booking = store.booking(booking_id)
            if user not in booking.participants:
                booking.participants.append(user)
            messages = booking.messages[-HISTORY_LENGTH:]
            last_read = booking.last_read.get(user, 0)
            unread = sum(1 for m in booking.messages if m["id"] > last_read and m["user_id"] != user)
            last_id = booking.messages[-1]["id"] if booking.messages else 0
            booking.last_read[user] = last_id
            initial = {"type": "history", "thread": booking.thread(), "messages": messages}
        receipt = {
            "type": "receipt",
            "thread_id": f"booking-{booking_id}",
            "user_id": user,
            "connection_id": request.connection_id,
            "last_read_message_id": last_id,
            "unread": unread,
        }
        return ConnectAnswer(initial=initial, receipt=receipt, user_id=user)

    @app.post(
        "/api/chat/ws/{booking_id}/message",
        response_model=MessageAnswer,
        response_model_exclude_none=True,
        tags=["chat"],
    )
    def chat_message(request: MessageRequest, booking_id: str = Path(pattern=_ID)) -> dict[str, Any]:
        """``{"body": ...}`` posts a message, ``{"type": "reaction", "emoji", "message_id"}`` toggles a
        reaction (both broadcast); ``{"type": "read", "message_id"}`` answers a receipt to the sender."""
        user = user_for(request.token)
        assert user is not None
        frame = request.message
        kind = frame.get("type", "message")
        with store.lock:
            booking = store.booking(booking_id)
            if kind == "message":
                body = frame.get("body")
                if not isinstance(body, str) or not body.strip():
                    raise HTTPException(400, "a message needs a non-empty body")
                if len(body) > MAX_BODY_CHARS:
                    raise HTTPException(400, f"a message body is at most {MAX_BODY_CHARS} characters")
                message = {
                    "id": store.next_id(),
                    "thread_id": f"booking-{booking_id}",
                    "user_id": user,
                    "body": body,
                    "created_at": _now(),
                    "reactions": {},
                }
                client_id = frame.get("client_id")
                if isinstance(client_id, (str, int)):
                    message["client_id"] = client_id
                booking.messages.append(message)
                if user not in booking.participants:
                    booking.participants.append(user)
                return {"type": "message", "message": message, "thread": booking.thread(), "broadcast": True}
            if kind == "reaction":
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
                }
            if kind == "read":
                message_id = frame.get("message_id")
                if not isinstance(message_id, int):
                    raise HTTPException(400, "a read receipt needs a message_id")
                booking.last_read[user] = max(booking.last_read.get(user, 0), message_id)
                return {
                    "type": "receipt",
                    "thread_id": f"booking-{booking_id}",
                    "user_id": user,
                    "last_read_message_id": booking.last_read[user],
                }
        raise HTTPException(400, f"unknown message type {kind!r}")

    # -- booking --

    @app.post(
        "/api/ws/bookings/{booking_id}/connect",
        response_model=ConnectAnswer,
        response_model_exclude_none=True,
        tags=["booking"],
    )
    def booking_connect(request: ConnectRequest, booking_id: str = Path(pattern=_ID)) -> ConnectAnswer:
        """The booking's current status first; later changes arrive as ``booking_status`` pushes."""
        user = user_for(request.token)
        with store.lock:
            summary = store.booking(booking_id).summary()
        return ConnectAnswer(initial={"type": "booking", "booking": summary}, user_id=user)

    @app.post(
        "/api/ws/bookings/{booking_id}/message",
        response_model=MessageAnswer,
        response_model_exclude_none=True,
        tags=["booking"],
    )
    def booking_message(request: MessageRequest, booking_id: str = Path(pattern=_ID)) -> dict[str, Any]:
        """``{"type": "status"}`` answers the booking's status to the sender."""
        user_for(request.token)
        if request.message.get("type") != "status":
            raise HTTPException(400, 'booking connections only ask {"type": "status"}')
        with store.lock:
            summary = store.booking(booking_id).summary()
        return {"type": "booking", "booking": summary}

    # -- notifications --

    @app.post(
        "/api/notifications/ws/connect",
        response_model=ConnectAnswer,
        response_model_exclude_none=True,
        tags=["notification"],
    )
    def notifications_connect(request: ConnectRequest) -> ConnectAnswer:
        """Answers ``user_id`` (the proxy's channel is ``user_{user_id}``) and the unread notifications."""
        user = user_for(request.token)
        assert user is not None
        with store.lock:
            items = list(store.notifications.get(user, []))
        unread = [i for i in items if not i["read"]]
        return ConnectAnswer(
            initial={"type": "notifications", "items": unread, "unread": len(unread)}, user_id=user
        )

    @app.post(
        "/api/notifications/ws/message",
        response_model=MessageAnswer,
        response_model_exclude_none=True,
        tags=["notification"],
    )
    def notifications_message(request: MessageRequest) -> dict[str, Any]:
        """``{"type": "mark_read"}`` marks every notification read."""
        user = user_for(request.token)
        assert user is not None
        if request.message.get("type") != "mark_read":
            raise HTTPException(400, 'notification connections only send {"type": "mark_read"}')
        with store.lock:
            for item in store.notifications.get(user, []):
                item["read"] = True
        return {"type": "notifications", "items": [], "unread": 0}

    # -- feed --

    @app.post(
        "/api/ws/items-feed/message",
        response_model=MessageAnswer,
        response_model_exclude_none=True,
        tags=["feed"],
    )
    def feed_message(request: MessageRequest) -> dict[str, Any]:
        """Any frame answers the latest items; a token is optional, but a bad one is 401."""
        user_for(request.token, required=False)
        with store.lock:
            items = store.feed[-HISTORY_LENGTH:]
        return {"type": "feed", "items": items}

    return app
