"""What goes on the wire: strict JSON both ways, text that encodes, frames within the limit.

Pure functions (no I/O). ``loads`` refuses NaN, Infinity and numbers that overflow;
``encode`` writes compact UTF-8 JSON and replaces lone surrogates (which cannot be
encoded) by U+FFFD; ``frames_for`` splits a history over the 128 KB message limit
into ordered parts.
"""

from __future__ import annotations

import json
import math
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


def _finite(text: str) -> float:
    """A JSON number, or ``NaN`` / ``Infinity`` (refused), or one that overflows (refused)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def loads(text: str | bytes) -> Any:
    """Strict JSON: no NaN or Infinity, no number that overflows (browsers reject them)."""
    return json.loads(text, parse_constant=_finite, parse_float=_finite)


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


def frames_for(payload: Any, limit: int = MAX_MESSAGE_BYTES, *, ref: Any = None) -> list[bytes]:
    """The frames that carry ``payload`` (with ``ref``, if any) to a client, each at most ``limit`` bytes.

    A payload that fits is one frame. A ``history`` payload over the limit is
    split into ordered frames carrying ``part`` (1-based), ``parts`` and a
    slice of ``messages``; only the last carries ``ref`` (a split reply answers
    once). Anything else over the limit raises ``TooLarge``.
    """
    data = encode(payload if ref is None else {**payload, "ref": ref})
    if len(data) <= limit:
        return [data]
    kind = payload.get("type") if isinstance(payload, dict) else None
    if kind == "history" and isinstance(payload.get("messages"), list) and payload["messages"]:
        return _split_history(payload, limit, {} if ref is None else {"ref": ref})
    raise TooLarge(f"a {kind or 'payload'} of {len(data)} bytes is over the {limit // 1024} KB message limit")


def _split_history(payload: dict[str, Any], limit: int, last: dict[str, Any]) -> list[bytes]:
    messages: list[Any] = payload["messages"]
    widest = 10 ** len(str(len(messages))) - 1
    # An upper bound of everything in a part but its messages: the widest part numbers, the ref.
    overhead = len(encode({**payload, "messages": [], "part": widest, "parts": widest, **last}))
    groups: list[list[Any]] = [[]]
    used = overhead - 1  # each message adds its size and the comma before it, but the first
    for message in messages:
        size = len(encode(message))
        if overhead + size > limit:
            raise TooLarge(f"a history message of {size} bytes cannot fit in one {limit // 1024} KB frame")
        if used + 1 + size > limit:
            groups.append([])
            used = overhead - 1
        used += 1 + size
        groups[-1].append(message)
    count = len(groups)
    return [
        encode({**payload, "messages": group, "part": n, "parts": count, **(last if n == count else {})})
        for n, group in enumerate(groups, start=1)
    ]
