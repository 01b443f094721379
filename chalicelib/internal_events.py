"""The events the app sends itself: typed, with their encoding in one place.

``DeliveryEvent`` goes from ``$connect`` to ``deliver`` (the initial frames);
``PresenceEvent`` from ``$connect`` and ``$disconnect`` to ``deliver`` (with
``PRESENCE_EVENTS``: a socket arrived in, or left, booking channels);
``FanOutChunk`` goes from a fan-out to ``fanout`` (a later chunk of a large
channel, the connections a fan-out had no time left for, or a later attempt for
connections whose posts failed). None carries a Management API endpoint: the
function that runs it takes the configured one, or the one stored with each
connection, so no event can make the app post anywhere else. Frames travel compressed
(zlib + base64) so that large histories fit Lambda's asynchronous payload limit.
``from_payload`` raises ``InvalidEvent`` for anything that is not such an event.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import InvalidEvent
from chalicelib.protocol import USER_ID_MAX, booking_id_of, user_id_of

#: Lambda's asynchronous invocation payload limit, with room for the envelope.
ASYNC_PAYLOAD_LIMIT = 240 * 1024


def pack_frames(frames: list[bytes]) -> str:
    """Frames for an asynchronous invocation: compressed, so large histories fit."""
    raw = json.dumps([f.decode("utf-8") for f in frames], ensure_ascii=False).encode("utf-8")
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def unpack_frames(packed: str) -> list[bytes]:
    try:
        frames = json.loads(zlib.decompress(base64.b64decode(packed, validate=True)))
    except (zlib.error, ValueError) as exc:  # binascii.Error and JSON's errors are ValueErrors
        raise InvalidEvent("frames are not packed frames") from exc
    if not isinstance(frames, list) or not all(isinstance(f, str) for f in frames):
        raise InvalidEvent("frames must be a list of strings")
    try:
        return [f.encode("utf-8") for f in frames]
    except UnicodeEncodeError as exc:  # a lone surrogate: no frame of ours holds one
        raise InvalidEvent("frames must be UTF-8 text") from exc


def _field(payload: Mapping[str, Any], name: str, kind: type) -> Any:
    value = payload.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidEvent(f"{name} must be a {kind.__name__}")
    return value


def _body(payload: Any, key: str, what: str) -> Mapping[str, Any]:
    """``payload[key]``, the object an event wraps, or ``InvalidEvent``."""
    body = payload.get(key) if isinstance(payload, Mapping) else None
    if not isinstance(body, Mapping):
        raise InvalidEvent(f"a {what} is an object with a {key}")
    return body


@dataclass(frozen=True)
class DeliveryEvent:
    """A new connection's initial frames, posted once its handshake is complete."""

    connection_id: str
    channel: str
    frames: list[bytes]

    def to_payload(self) -> dict[str, Any]:
        return {**vars(self), "frames": pack_frames(self.frames)}

    @classmethod
    def from_payload(cls, payload: Any) -> DeliveryEvent:
        if not isinstance(payload, Mapping):
            raise InvalidEvent("a delivery event is an object")
        return cls(
            _field(payload, "connection_id", str),
            _field(payload, "channel", str),
            unpack_frames(_field(payload, "frames", str)),
        )


@dataclass(frozen=True)
class FanOutChunk:
    """Part of a fan-out handed to a later invocation: these connections, these frames."""

    channel: str
    connection_ids: list[str]
    frames: list[bytes]
    #: 0 for a chunk of a large channel; n for the n-th later attempt after failures.
    attempt: int = 0

    def to_payload(self) -> dict[str, Any]:
        return {"chunk": {**vars(self), "frames": pack_frames(self.frames)}}

    @classmethod
    def from_payload(cls, payload: Any, *, max_attempt: int) -> FanOutChunk:
        body = _body(payload, "chunk", "fan-out chunk")
        ids = _field(body, "connection_ids", list)
        if not all(isinstance(i, str) for i in ids):
            raise InvalidEvent("connection_ids must be strings")
        attempt = body.get("attempt", 0)
        if not isinstance(attempt, int) or isinstance(attempt, bool) or not 0 <= attempt <= max_attempt:
            raise InvalidEvent("attempt out of range")
        return cls(_field(body, "channel", str), ids, unpack_frames(_field(body, "frames", str)), attempt)


@dataclass(frozen=True)
class PresenceEvent:
    """A user's socket arrived in (``online``) or left booking channels: ``deliver`` tells each
    channel ``presence_changed`` when it was the user's first socket there, or last."""

    connection_id: str
    user_id: str
    online: bool
    #: (booking id, connection type) of each channel and type the socket joined or left.
    channels: tuple[tuple[str, str], ...]

    def to_payload(self) -> dict[str, Any]:
        channels = [{"booking_id": b, "connection_type": t} for b, t in self.channels]
        return {"presence": {**vars(self), "channels": channels}}

    @classmethod
    def from_payload(cls, payload: Any, *, booking_types: Collection[str]) -> PresenceEvent:
        """The event, whose connection types must be among ``booking_types``."""
        body = _body(payload, "presence", "presence event")
        connection_id, user_id = _field(body, "connection_id", str), user_id_of(_field(body, "user_id", str))
        if not connection_id or user_id is None:
            raise InvalidEvent(f"connection_id must not be empty, user_id 1 to {USER_ID_MAX} characters")
        if not isinstance(body.get("online"), bool):
            raise InvalidEvent("online must be true or false")
        channels: list[tuple[str, str]] = []
        for entry in _field(body, "channels", list):
            if not isinstance(entry, Mapping):
                raise InvalidEvent("each channel is an object")
            booking_id, connection_type = entry.get("booking_id"), entry.get("connection_type")
            if not isinstance(booking_id, str) or booking_id_of(booking_id) is None:
                raise InvalidEvent("booking_id must be a booking id")
            if not isinstance(connection_type, str) or connection_type not in booking_types:
                raise InvalidEvent("connection_type must be a booking's connection type")
            channels.append((booking_id, connection_type))
        if not channels:
            raise InvalidEvent("channels must name at least one channel")
        return cls(connection_id, user_id, body["online"], tuple(channels))
