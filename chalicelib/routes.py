"""The per-type route table and the channel keys, in one place.

Each connection type has a connect path (``None``: accepted without calling the
backend), a message path, and a channel kind; a booking type may also have a
user-level connect path (a socket opened without a booking: chat's
``/api/chat/ws/connect``) and a participants path (off by default). Paths are templates that may use
``{booking_id}`` (types that have a booking); they can be overridden through
``BACKEND_ROUTES`` (a JSON object of type -> ``connect`` / ``message``), which is
validated when the settings are read, so a bad template fails at start-up with
its name, never on a request.

Channels are not configurable. A connection's channel key, stored in the
table's partition key, is ``{kind}#{id}``: ``booking#{booking_id}`` for chat
and booking connections, ``user#{user_id}`` for notification connections and
``feed#`` for the feed. Booking ids cannot contain ``#`` and the kind comes
first, so no id a client or the backend chooses can name another kind's
channel.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from chalicelib.errors import ConfigurationError

ChannelKind = Literal["booking", "user", "feed"]


def channel_key(kind: ChannelKind, value: str | None = None) -> str:
    """The stored channel key: ``booking#1``, ``user#alice``, ``feed#``."""
    if kind != "feed" and not value:
        raise ValueError(f"a {kind} channel needs an id")
    return f"{kind}#{'' if kind == 'feed' else value}"


def is_channel_key(channel: str) -> bool:
    """Whether ``channel`` has a kind (items written before kinds existed have none)."""
    kind, separator, _ = channel.partition("#")
    return bool(separator) and kind in ("booking", "user", "feed")


@dataclass(frozen=True)
class Route:
    connect: str | None
    message: str
    channel_kind: ChannelKind
    #: A booking type's connect route for a socket opened without a booking (its user's socket).
    user_connect: str | None = None
    #: A booking type's route answering ``{"user_ids": [...]}``: whose user-level sockets a
    #: broadcast that names no ``recipients`` reaches (None: only the booking's channel).
    participants: str | None = None

    @property
    def needs_booking(self) -> bool:
        return self.channel_kind == "booking"

    @property
    def needs_token(self) -> bool:
        """A type without a connect route cannot verify a token, so it takes none."""
        return self.connect is not None

    def connect_path(self, booking_id: str | None) -> str | None:
        return None if self.connect is None else self.connect.format(booking_id=booking_id or "")

    def message_path(self, booking_id: str | None) -> str:
        return self.message.format(booking_id=booking_id or "")

    def participants_path(self, booking_id: str) -> str | None:
        return None if self.participants is None else self.participants.format(booking_id=booking_id)

    def channel_for(self, booking_id: str | None, user_id: str | None) -> str:
        """The channel of a connection of this type (a feed's ignores both ids)."""
        return channel_key(self.channel_kind, booking_id if self.needs_booking else user_id)


DEFAULT_ROUTES: dict[str, Route] = {
    "chat": Route(
        "/api/chat/ws/{booking_id}/connect",
        "/api/chat/ws/{booking_id}/message",
        "booking",
        user_connect="/api/chat/ws/connect",
    ),
    "booking": Route(
        "/api/ws/bookings/{booking_id}/connect", "/api/ws/bookings/{booking_id}/message", "booking"
    ),
    "notification": Route("/api/notifications/ws/connect", "/api/notifications/ws/message", "user"),
    "feed": Route(None, "/api/ws/items-feed/message", "feed"),
}
DEFAULT_TYPE = "chat"
#: The fields ``BACKEND_ROUTES`` may set, and those only a booking type has.
_ALLOWED_FIELDS = {"connect", "message", "user_connect", "participants"}
_BOOKING_FIELDS = {"user_connect", "participants"}


def check_path_template(type_name: str, field: str, value: object, *, has_booking: bool) -> None:
    """A backend path template, or ``ConfigurationError`` naming what is wrong with it."""
    where = f"BACKEND_ROUTES: {type_name}.{field}"
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{where} must be a non-empty string")
    if not value.startswith("/") or any(c in value for c in "?# \t\r\n"):
        raise ConfigurationError(f"{where} must be a path starting with '/' (no query, fragment or spaces)")
    try:
        parsed = list(string.Formatter().parse(value))  # (literal, name, spec, conversion)
    except ValueError as exc:  # a stray '{' or '}'
        raise ConfigurationError(
            f"{where} is not a valid template ({exc}); write a literal brace twice"
        ) from exc
    names = {name for _, name, _, _ in parsed if name is not None}
    unknown = names - {"booking_id"} if has_booking else names
    if unknown:
        raise ConfigurationError(
            f"{where} uses unknown placeholder(s) {sorted(unknown)}"
            + ("" if has_booking else f"; type {type_name} has no booking_id")
        )
    if any(spec or conv for _, _, spec, conv in parsed):
        raise ConfigurationError(f"{where}: placeholders take no format spec or conversion")


def routes_with_overrides(raw: str | None) -> Mapping[str, Route]:
    """The default table with ``BACKEND_ROUTES`` (JSON) merged over it."""
    table = dict(DEFAULT_ROUTES)
    try:
        overrides = json.loads(raw or "{}")
    except ValueError as exc:
        raise ConfigurationError(f"BACKEND_ROUTES is not valid JSON: {exc}") from exc
    if not isinstance(overrides, dict):
        raise ConfigurationError("BACKEND_ROUTES must be a JSON object of type -> route")
    for type_name, fields in overrides.items():
        where = f"BACKEND_ROUTES: {type_name}"
        if type_name not in table:
            raise ConfigurationError(
                f"BACKEND_ROUTES: unknown connection type {type_name!r} (known: {', '.join(sorted(table))})"
            )
        if isinstance(fields, dict) and "channel" in fields:
            raise ConfigurationError(f"{where}.channel cannot be set: channels are fixed by connection type")
        if not isinstance(fields, dict) or not set(fields) <= _ALLOWED_FIELDS:
            raise ConfigurationError(f"{where} must be an object with keys among {sorted(_ALLOWED_FIELDS)}")
        route = table[type_name]
        if not route.needs_booking and set(fields) & _BOOKING_FIELDS:
            raise ConfigurationError(
                f"{where} has no booking: user_connect and participants are for booking types"
            )
        for field, value in fields.items():
            if value is not None or field == "message":  # a route other than message may be removed
                has_booking = route.needs_booking and field != "user_connect"
                check_path_template(type_name, field, value, has_booking=has_booking)
        table[type_name] = replace(route, **fields)
    return table
