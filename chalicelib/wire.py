"""What goes on the wire: strict JSON both ways, text that encodes, frames within the limit.

Pure functions (no I/O). ``loads`` refuses NaN, Infinity and numbers that overflow;
``encode`` writes compact UTF-8 JSON and replaces lone surrogates (which cannot be
encoded) by U+FFFD; ``frames_for`` splits a history over the 128 KB message limit
into ordered parts.
"""

from __future__ import annotations

import json
import re
from typing import Any

from chalicelib.errors import TooLarge

#: API Gateway's WebSocket message limit (128 KB), for frames both ways.
MAX_MESSAGE_BYTES = 128 * 1024

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
#: A JSON escape of a surrogate (paired or not): only then can parsed text hold a lone one.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def is_text(value: str) -> bool:
    """Whether ``value`` encodes as UTF-8 (holds no lone surrogate)."""
    return _LONE_SURROGATE.search(value) is None


def as_text(value: str) -> str:
    """``value`` with each lone surrogate replaced by U+FFFD."""
    return _LONE_SURROGATE.sub("\ufffd", value)


def has_lone_surrogate(value: Any) -> bool:
    """Whether any string in ``value``, keys included, holds a lone surrogate.

    Checked on its JSON text, so ``value`` must nest less deeply than the recursion limit
    (a client frame's depth is checked first).
    """
    return not is_text(json.dumps(value, ensure_ascii=False))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is out of range")
    return value


def loads(text: str | bytes) -> Any:
    """Strict JSON: no NaN or Infinity, no number that overflows (browsers reject them)."""
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite)


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests containers more than ``limit`` levels (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > limit:
            return True
        children = current.values() if isinstance(current, dict) else current
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode(payload: Any) -> bytes:
    """Compact UTF-8 JSON: what goes on the wire, serialized once per payload.

    Always valid UTF-8: a lone surrogate anywhere (key or value) becomes U+FFFD.
    Raises ``ValueError`` for NaN or Infinity, which no browser would parse.
    """
    text = dumps(payload)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # only lone surrogates cannot be encoded
        return as_text(text).encode("utf-8")


def frames_for(payload: Any, limit: int = MAX_MESSAGE_BYTES) -> list[bytes]:
    """The frames that carry ``payload`` to a client, each at most ``limit`` bytes.

    A payload that fits is one frame. A ``history`` payload over the limit is
    split into ordered frames carrying ``part`` (1-based), ``parts`` and a
    slice of ``messages``. Anything else over the limit raises ``TooLarge``.
    """
    data = encode(payload)
    if len(data) <= limit:
        return [data]
    kind = payload.get("type") if isinstance(payload, dict) else None
    if kind == "history" and isinstance(payload.get("messages"), list) and payload["messages"]:
        return _split_history(payload, limit)
    raise TooLarge(f"a {kind or 'payload'} of {len(data)} bytes is over the {limit // 1024} KB message limit")


def frames_with_ref(payload: dict[str, Any], ref: Any) -> list[bytes]:
    """``frames_for(payload)`` with ``ref`` on the last frame only (a split reply answers once)."""
    if ref is None:
        return frames_for(payload)
    data = encode({**payload, "ref": ref})  # the usual answer: one frame, encoded once
    if len(data) <= MAX_MESSAGE_BYTES:
        return [data]
    frames = frames_for(payload, MAX_MESSAGE_BYTES - len(encode({"ref": ref})))
    return [*frames[:-1], encode({**loads(frames[-1]), "ref": ref})]


def _split_history(payload: dict[str, Any], limit: int) -> list[bytes]:
    messages: list[Any] = payload["messages"]
    widest = 10 ** len(str(len(messages))) - 1
    # An upper bound of everything in a part but its messages: the widest part numbers.
    overhead = len(encode({**payload, "messages": [], "part": widest, "parts": widest}))
    groups: list[list[Any]] = [[]]
    used = overhead
    for message in messages:
        size = len(encode(message))
        if overhead + size > limit:
            raise TooLarge(f"a history message of {size} bytes cannot fit in one {limit // 1024} KB frame")
        if groups[-1] and used + 1 + size > limit:
            groups.append([])
            used = overhead
        used += size + (1 if groups[-1] else 0)  # the comma before all but the first
        groups[-1].append(message)
    return [
        encode({**payload, "messages": group, "part": index, "parts": len(groups)})
        for index, group in enumerate(groups, start=1)
    ]
