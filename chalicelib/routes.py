"""The per-type route table (CONTRACT.md §2), in one place.

Each connection type has a connect path (``None``: accepted without calling the
backend), a message path, and a channel template naming the DynamoDB partition.
Templates use ``{booking_id}`` and ``{user_id}``. The table can be overridden
through ``BACKEND_ROUTES`` (a JSON object of type → partial route), read by
``config.Settings``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from chalicelib.errors import ConfigurationError


@dataclass(frozen=True)
class Route:
    connect: str | None
    message: str
    channel: str
    needs_booking: bool
    needs_token: bool

    def connect_path(self, booking_id: str | None) -> str | None:
        if self.connect is None:
            return None
        return self.connect.format(booking_id=booking_id or "")

    def message_path(self, booking_id: str | None) -> str:
        return self.message.format(booking_id=booking_id or "")

    def channel_for(self, booking_id: str | None, user_id: str | None) -> str:
        return self.channel.format(booking_id=booking_id or "", user_id=user_id or "")


DEFAULT_ROUTES: dict[str, Route] = {
    "chat": Route(
        connect="/api/chat/ws/{booking_id}/connect",
        message="/api/chat/ws/{booking_id}/message",
        channel="{booking_id}",
        needs_booking=True,
        needs_token=True,
    ),
    "booking": Route(
        connect="/api/ws/bookings/{booking_id}/connect",
        message="/api/ws/bookings/{booking_id}/message",
        channel="{booking_id}",
        needs_booking=True,
        needs_token=True,
    ),
    "notification": Route(
        connect="/api/notifications/ws/connect",
        message="/api/notifications/ws/message",
        channel="user_{user_id}",
        needs_booking=False,
        needs_token=True,
    ),
    "feed": Route(
        connect=None,
        message="/api/ws/items-feed/message",
        channel="feed",
        needs_booking=False,
        needs_token=False,
    ),
}

DEFAULT_TYPE = "chat"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_ALLOWED_FIELDS = {"connect", "message", "channel"}


def _check_template(type_name: str, field: str, value: object, allowed: set[str]) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"BACKEND_ROUTES: {type_name}.{field} must be a non-empty string")
    unknown = set(_PLACEHOLDER.findall(value)) - allowed
    if unknown:
        raise ConfigurationError(
            f"BACKEND_ROUTES: {type_name}.{field} uses unknown placeholder(s) {sorted(unknown)}"
        )


def routes_with_overrides(raw: str | None) -> Mapping[str, Route]:
    """The default table with ``BACKEND_ROUTES`` (JSON) merged over it."""
    if not raw:
        return dict(DEFAULT_ROUTES)
    try:
        overrides = json.loads(raw)
    except ValueError as exc:
        raise ConfigurationError(f"BACKEND_ROUTES is not valid JSON: {exc}") from exc
    if not isinstance(overrides, dict):
        raise ConfigurationError("BACKEND_ROUTES must be a JSON object of type -> route")
    table = dict(DEFAULT_ROUTES)
    for type_name, fields in overrides.items():
        if type_name not in table:
            raise ConfigurationError(
                f"BACKEND_ROUTES: unknown connection type {type_name!r} (known: {', '.join(sorted(table))})"
            )
        if not isinstance(fields, dict) or not set(fields) <= _ALLOWED_FIELDS:
            raise ConfigurationError(
                f"BACKEND_ROUTES: {type_name} must be an object with keys among {sorted(_ALLOWED_FIELDS)}"
            )
        for field, value in fields.items():
            if field == "connect" and value is None:
                continue
            allowed = {"user_id", "booking_id"} if field == "channel" else {"booking_id"}
            _check_template(type_name, field, value, allowed)
        table[type_name] = replace(table[type_name], **fields)
    return table
