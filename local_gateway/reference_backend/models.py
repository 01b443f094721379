"""The contract's request and answer bodies (what ``/docs`` shows), and the dev routes' bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from local_gateway.reference_backend.settings import ID_PATTERN, TOKEN_LIFETIME_SECONDS


class ConnectBody(BaseModel):
    """What the proxy posts on ``$connect``."""

    connection_id: str = Field(description="API Gateway's connection id")
    token: str | None = Field(
        default=None, description="the client's JWT, from ?token= or the bearer subprotocol"
    )
    since: int | None = Field(
        default=None,
        ge=0,
        description="a chat client resuming: the id of the last message it has; the history then "
        "holds only the messages after it",
    )


class UserConnectBody(BaseModel):
    """What the proxy posts when a chat socket opens without a booking (one socket per user)."""

    connection_id: str
    token: str | None = None


class ParticipantsAnswer(BaseModel):
    """Who a booking's broadcasts reach on their user-level sockets."""

    user_ids: list[str]


class MessageBody(BaseModel):
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
    user_id: str = Field(pattern=ID_PATTERN, examples=["alice"])
    ttl_seconds: int = Field(
        default=TOKEN_LIFETIME_SECONDS,
        ge=0,
        le=TOKEN_LIFETIME_SECONDS,
        description="the token's lifetime; 0 issues a token that has already expired (for tests)",
    )


class TokenAnswer(BaseModel):
    token: str
    expires_at: int = Field(description="the token's `exp` claim, seconds since the epoch")


Status = Literal["pending", "confirmed", "checked_in", "completed", "cancelled"]

#: The statuses each status may change to; completed and cancelled are final.
STATUS_CHANGES: dict[str, frozenset[str]] = {
    "pending": frozenset({"confirmed", "cancelled"}),
    "confirmed": frozenset({"checked_in", "cancelled"}),
    "checked_in": frozenset({"completed"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
}


class StatusRequest(BaseModel):
    status: Status = Field(
        description="pending -> confirmed or cancelled; confirmed -> checked_in or cancelled; "
        "checked_in -> completed; any other change is refused (409)"
    )


class NotifyRequest(BaseModel):
    text: str = Field(min_length=1, max_length=500)


class FeedItemRequest(BaseModel):
    title: str = Field(min_length=1, max_length=200)
