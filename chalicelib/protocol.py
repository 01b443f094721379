"""The client side of the protocol (docs/protocol.md): connect query, frames, error frames, size limits.

Everything here is pure: no I/O, no clock, no AWS.

Untrusted text. JSON's ``\\ud800``-``\\udfff`` escapes parse into lone surrogates:
strings that cannot be encoded as UTF-8, so no frame may carry one. Each source is
handled where it enters:

- a client frame holding one anywhere (key or value) is refused as
  ``invalid_message`` (``parse_frame``): its sender is the one who can fix it, and
  forwarding it would hand the backend text it might store and serve to everyone;
- a connect token holding one is refused with 401 (``parse_connect``);
- a push payload or target holding one is refused (``parse_push``): the backend
  invoked the function and reads the error in the answer;
- the backend's answers (replies, broadcasts, histories, error details) have each
  lone surrogate replaced by U+FFFD when they are encoded (``encode``), as any
  UTF-8 decoder does with ill-formed input: refusing a stored history would let
  one participant's bad message lock a booking's chat for everyone.

So every frame ``encode`` produces is valid UTF-8 JSON, whatever it was given.

Echoed ids. ``ref`` echoes a client frame's ``id`` (or, for older clients, its
``client_id``) when it is a string of at most ``MAX_REF_CHARS`` characters or a
number that survives a browser's ``JSON.parse``: an integer within
±``MAX_SAFE_INTEGER``, or a finite fraction. A frame whose string or number ``id``
is outside that is refused as ``invalid_message`` saying why (without ``ref``: it
could not be echoed); ids of other types are not ids and are never echoed. So an
error frame is always far below the 128 KB limit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib import wire
from chalicelib.errors import BackendError, Forbidden, InvalidMessage, ProxyError, TooLarge, Unauthorized
from chalicelib.routes import DEFAULT_TYPE, Route, channel_key

#: Longest token accepted; anything longer is rejected before the backend is called.
MAX_TOKEN_CHARS = 8192
#: Deepest nesting of a client frame. A frame nested near Python's recursion limit
#: parses, then fails to encode again for the backend; no chat frame needs more.
MAX_FRAME_DEPTH = 64
#: Deepest nesting accepted in a backend answer before it is called invalid.
MAX_ANSWER_DEPTH = 256
#: Longest string ``id`` echoed as ``ref``.
MAX_REF_CHARS = 128
#: Largest integer a browser holds exactly (``Number.MAX_SAFE_INTEGER``).
MAX_SAFE_INTEGER = 2**53 - 1
#: Longest user id accepted from the backend (connect answers and push targets).
USER_ID_MAX = 128
BEARER_SUBPROTOCOL = "bearer"
BOOKING_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
PONG = {"type": "pong"}
#: What a well-formed booking id is, and a cursor, as the error messages say it.
BOOKING_ID_RULE = "booking_id must be 1-64 characters of letters, digits, '_' or '-'"
SINCE_RULE = "since must be a non-negative integer (the id of the last message received)"


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def booking_id_of(value: Any) -> str | None:
    """``value`` as a booking id (a string of the pattern or a non-negative integer), else None."""
    text = str(value) if _integer(value) and value >= 0 else value
    return text if isinstance(text, str) and BOOKING_ID_PATTERN.fullmatch(text) else None


def user_id_of(value: Any) -> str | None:
    """``value`` as a user id (a string or integer, 1 to ``USER_ID_MAX`` characters of text), else None."""
    text = str(value) if isinstance(value, str) or _integer(value) else ""
    return text if 0 < len(text) <= USER_ID_MAX and wire.is_text(text) else None


def _is_since(value: Any) -> bool:
    return _integer(value) and 0 <= value <= MAX_SAFE_INTEGER


@dataclass(frozen=True)
class ConnectRequest:
    """A validated ``$connect``: which type, which booking, which token."""

    connection_type: str
    route: Route
    booking_id: str | None
    token: str | None
    #: True when the token came as the ``bearer`` subprotocol, which must be echoed.
    bearer_subprotocol: bool
    #: A resuming client's cursor (``since``), passed to a booking's connect route.
    since: int | None

    @property
    def user_level(self) -> bool:
        """A booking type opened without a booking: the user's own socket."""
        return self.route.needs_booking and self.booking_id is None

    def connect_path(self) -> str | None:
        return self.route.user_connect if self.user_level else self.route.connect_path(self.booking_id)

    def channel(self, user_id: str | None) -> str:
        """The connection's channel: a user-level socket is in its user's."""
        if self.user_level:
            return channel_key("user", user_id)
        return self.route.channel_for(self.booking_id, user_id)


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A request header by case-insensitive name."""
    return next((value for key, value in (headers or {}).items() if key.lower() == name.lower()), None)


def check_origin(headers: Mapping[str, str] | None, allowed: tuple[str, ...]) -> None:
    """With an allow-list, the handshake's Origin must be on it (403 otherwise)."""
    origin = (header(headers, "Origin") or "").rstrip("/")
    if allowed and origin not in allowed:
        raise Forbidden("origin not allowed" if origin else "an Origin header is required")


def parse_connect(
    query: Mapping[str, str] | None,
    headers: Mapping[str, str] | None,
    routes: Mapping[str, Route],
) -> ConnectRequest:
    """Validate the handshake's query (docs/protocol.md, "Connecting"): 400 or 401 on failure."""
    query = query or {}
    connection_type = (query.get("type") or DEFAULT_TYPE).strip()
    route = routes.get(connection_type)
    if route is None:
        raise InvalidMessage(f"type must be one of {', '.join(sorted(routes))}", status=400)
    booking_id = query.get("booking_id") if route.needs_booking else None
    # absent (an empty one is malformed): the user's own socket, for a type that has one
    if booking_id is None and route.needs_booking and route.user_connect is None:
        raise InvalidMessage(f"booking_id is required for type {connection_type}", status=400)
    if booking_id is not None and not BOOKING_ID_PATTERN.fullmatch(booking_id):
        raise InvalidMessage(BOOKING_ID_RULE, status=400)
    # the token: the query's, else the one after ``bearer`` among the offered subprotocols
    offered = [p.strip() for p in (header(headers, "Sec-WebSocket-Protocol") or "").split(",") if p.strip()]
    bearer = BEARER_SUBPROTOCOL in offered
    after = offered[offered.index(BEARER_SUBPROTOCOL) + 1 :] if bearer else []
    token = query.get("token") or (after[0] if after else None)
    if token is not None and len(token) > MAX_TOKEN_CHARS:
        raise Unauthorized("token is too long")
    if token is not None and not wire.is_text(token):
        raise Unauthorized("token is not valid text (it holds a lone surrogate)")
    if route.needs_token and not token:
        raise Unauthorized(f"a token is required for type {connection_type}")
    raw = query.get("since")  # digits only: no sign, no spaces, no other script's digits
    since = int(raw) if raw is not None and raw.isascii() and raw.isdigit() and len(raw) <= 16 else None
    if raw is not None and not _is_since(since):
        raise InvalidMessage(SINCE_RULE, status=400)
    return ConnectRequest(connection_type, route, booking_id, token, bearer, since if booking_id else None)


@dataclass(frozen=True)
class BookingTarget:
    """The booking a client frame names (``subscribe``, ``presence``, or any frame with ``booking_id``)."""

    booking_id: str
    connection_type: str
    route: Route
    since: int | None

    @property
    def channel(self) -> str:
        return self.route.channel_for(self.booking_id, None)


def parse_booking_target(
    frame: Mapping[str, Any], routes: Mapping[str, Route], default_type: str, *, with_since: bool = False
) -> BookingTarget:
    """``booking_id`` (required), ``connection_type`` (else ``default_type``) and, when asked, ``since``."""
    booking_id = booking_id_of(frame.get("booking_id"))
    if booking_id is None:
        raise InvalidMessage(BOOKING_ID_RULE)
    connection_type = frame.get("connection_type", default_type)
    booking_types = sorted(name for name, route in routes.items() if route.needs_booking)
    if connection_type not in booking_types:
        raise InvalidMessage(f"connection_type must be one of {', '.join(booking_types)}")
    since = frame.get("since") if with_since else None
    if since is not None and not _is_since(since):
        raise InvalidMessage(SINCE_RULE)
    return BookingTarget(booking_id, connection_type, routes[connection_type], since)


def tagged(payload: Any, booking_id: str | None, connection_type: str | None) -> Any:
    """A frame from a booking's channel with ``booking_id`` and ``connection_type`` added when absent
    (none: no booking)."""
    if not isinstance(payload, dict) or booking_id is None:
        return payload
    tags = {"booking_id": booking_id, "connection_type": connection_type}
    extra = {key: value for key, value in tags.items() if value is not None and key not in payload}
    return {**payload, **extra} if extra else payload


def initial_frames(answer: Mapping[str, Any], booking_id: str | None, connection_type: str) -> list[bytes]:
    """A connect answer's ``initial`` and ``receipt`` as frames, in order and tagged with the booking
    (if any); one too large for the client becomes its ``too_large`` error frame."""
    frames: list[bytes] = []
    for payload in (answer.get("initial"), answer.get("receipt")):
        try:
            if payload is not None:
                frames += wire.frames_for(tagged(payload, booking_id, connection_type))
        except TooLarge as exc:
            frames.append(wire.encode(error_frame_for(exc)))
    return frames


def _id_problem(value: Any) -> str | None:
    """Why a string or number id cannot be echoed as ``ref``; None when it can (or is no id)."""
    if isinstance(value, str) and len(value) > MAX_REF_CHARS:
        return (
            f"id is {len(value)} characters long; ids of up to {MAX_REF_CHARS} characters "
            "are echoed as ref, longer ones are refused"
        )
    if isinstance(value, str) and not wire.is_text(value):
        return "id is not valid text (it holds a lone surrogate) and cannot be echoed as ref"
    if isinstance(value, float) and not math.isfinite(value):
        return "id is not a finite number"
    if _integer(value) and abs(value) > MAX_SAFE_INTEGER:
        return (
            "id is an integer beyond ±(2^53-1), which a browser cannot hold exactly, so it "
            "cannot be echoed as ref; send it as a string"
        )
    return None


def reference(frame: Any, keys: tuple[str, ...] = ("id", "client_id")) -> Any:
    """The client's ``id`` (or ``client_id``) to echo as ``ref``: only what can be echoed."""
    for key in keys if isinstance(frame, dict) else ():
        value = frame.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and not _id_problem(value):
            return value
    return None


def request_id(frame: Any) -> Any:
    """The client's ``id``, which the one frame answering this request echoes as ``ref``."""
    return reference(frame, ("id",))


def parse_frame(body: str | None, *, is_base64: bool = False) -> dict[str, Any]:
    """A client frame as a JSON object, or ``InvalidMessage`` / ``TooLarge``."""
    if is_base64:
        raise InvalidMessage("binary frames are not supported; send JSON text")
    if body is None or not body.strip():
        raise InvalidMessage("the frame is empty; send a JSON object")
    if len(body.encode("utf-8", "surrogatepass")) > wire.MAX_MESSAGE_BYTES:
        raise TooLarge(f"the frame is over {wire.MAX_MESSAGE_BYTES // 1024} KB")
    try:
        frame = wire.loads(body)
    except (ValueError, RecursionError):
        raise InvalidMessage("the frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise InvalidMessage("the frame must be a JSON object")
    if wire.depth_exceeds(frame, MAX_FRAME_DEPTH):
        raise InvalidMessage(f"the frame is nested more than {MAX_FRAME_DEPTH} levels deep")
    if not wire.is_text(body) or (wire.SURROGATE_ESCAPE.search(body) and wire.has_lone_surrogate(frame)):
        raise InvalidMessage(
            "the frame holds a lone surrogate (\\ud800-\\udfff), which is not text; send valid Unicode",
            ref=reference(frame),
        )
    problem = _id_problem(frame.get("id"))
    if problem is not None:
        raise InvalidMessage(problem)
    return frame


def error_frame(code: str, message: str, *, retryable: bool = False, ref: Any = None) -> dict[str, Any]:
    """The one error frame shape (docs/protocol.md, "Errors")."""
    frame = {"type": "error", "code": code, "message": message, "retryable": retryable}
    return frame if ref is None else {**frame, "ref": ref}


def error_frame_for(exc: ProxyError, ref: Any = None) -> dict[str, Any]:
    """The error frame for ``exc``, echoing ``ref`` (or the request id the error knows)."""
    return error_frame(exc.code, exc.message, retryable=exc.retryable, ref=exc.ref if ref is None else ref)


def answered_user(answer: Mapping[str, Any]) -> str | None:
    """The ``user_id`` of a backend's connect answer (None: not named), or ``BackendError``."""
    value = answer.get("user_id")
    user = user_id_of(value)
    if user is None and value not in (None, ""):
        raise BackendError("the chat service answered an invalid user_id")
    return user


# -- server push (the backend's events to the push function) -------------------


@dataclass(frozen=True)
class PushTarget:
    """A validated push: which channel, which connection type, the frame, who not to send to."""

    channel_kind: str
    channel_value: str | None
    connection_type: str | None
    #: The payload as sent: to a booking, tagged with its ``booking_id`` (and ``connection_type``).
    frame: bytes
    exclude: frozenset[str]


def _push_channel(spec: Any) -> tuple[str, str | None]:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise InvalidMessage('channel must be one of {"booking_id": ...}, {"user_id": ...}, {"feed": true}')
    ((kind, value),) = spec.items()
    if kind == "booking_id" and booking_id_of(value) is None:
        raise InvalidMessage(f"channel.{BOOKING_ID_RULE}")
    if kind == "user_id" and user_id_of(value) is None:
        if isinstance(value, str) and 0 < len(value) <= USER_ID_MAX:
            raise InvalidMessage("channel.user_id is not valid text (it holds a lone surrogate)")
        raise InvalidMessage("channel.user_id must be a non-empty string or number")
    if kind == "feed" and value is not True:
        raise InvalidMessage("channel.feed must be true")
    if kind not in ("booking_id", "user_id", "feed"):
        raise InvalidMessage(f"unknown channel kind {kind!r}")
    return kind, None if kind == "feed" else str(value)


def parse_push(event: Any, connection_types: Mapping[str, Route]) -> PushTarget:
    """Validate a push event; ``InvalidMessage`` or ``TooLarge`` says what is wrong."""
    if not isinstance(event, dict):
        raise InvalidMessage("the push event must be a JSON object")
    unknown = set(event) - {"channel", "connection_type", "payload", "exclude"}
    if unknown:
        raise InvalidMessage(f"unknown field(s) {sorted(unknown)}")
    kind, value = _push_channel(event.get("channel"))
    connection_type = event.get("connection_type")
    if connection_type is not None and connection_type not in connection_types:
        raise InvalidMessage(f"connection_type must be one of {', '.join(sorted(connection_types))}")
    exclude = event.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(i, str) for i in exclude):
        raise InvalidMessage("exclude must be a list of connection ids")
    if "payload" not in event:
        raise InvalidMessage("payload is required")
    payload = event["payload"]
    if not isinstance(payload, dict):
        raise InvalidMessage("payload must be a JSON object")
    # a frame from a booking's channel says which (and for which type, when the push does)
    sent = tagged(payload, value, connection_type) if kind == "booking_id" else payload
    try:
        data = wire.dumps(sent).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessage(
            "payload holds a lone surrogate (\\ud800-\\udfff), which is not text; send valid Unicode"
        ) from None
    except ValueError:
        raise InvalidMessage("payload must be valid JSON (no NaN or Infinity)") from None
    if len(data) > wire.MAX_MESSAGE_BYTES:
        size = len(wire.dumps(payload).encode("utf-8")) if sent is not payload else len(data)
        if size <= wire.MAX_MESSAGE_BYTES:
            raise TooLarge("the payload with its booking_id is over the message limit")
        raise TooLarge(f"the payload is {size} bytes, over the {wire.MAX_MESSAGE_BYTES // 1024} KB limit")
    return PushTarget(kind, value, connection_type, data, frozenset(exclude))
