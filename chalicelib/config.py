"""Settings read once from the environment (docs/operations.md, "Settings").

Each setting is a field of ``Settings`` whose environment variable is its name in
upper case (``routes``: ``BACKEND_ROUTES``), with its default and the rule that
reads it; an unset or blank variable keeps the default. ``Settings.from_env()`` is
called lazily by the app's factories, never at import, so ``chalice package`` and
test imports need no environment.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from chalicelib.errors import ConfigurationError
from chalicelib.routes import DEFAULT_ROUTES, Route, routes_with_overrides

#: A rule: the variable's name and its non-blank value -> the setting, or ``ConfigurationError``.
Rule = Callable[[str, str], Any]


def _setting(default: Any, rule: Rule) -> Any:
    return field(default=default, metadata={"rule": rule})


def _number(minimum: float, *, whole: bool = False, under: float = math.inf) -> Rule:
    def read(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{name} must be a number, got {raw!r}") from exc
        if not math.isfinite(value):
            raise ConfigurationError(f"{name} must be a finite number, got {raw!r}")
        if value < minimum:
            raise ConfigurationError(f"{name} must be at least {minimum:g}, got {raw!r}")
        if value >= under:
            raise ConfigurationError(f"{name} must stay under API Gateway's {under:g} s integration limit")
        if whole and value != int(value):
            raise ConfigurationError(f"{name} must be a whole number, got {raw!r}")
        return int(value) if whole else value

    return read


def _pauses(name: str, raw: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in raw.split(","))
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be numbers separated by commas, got {raw!r}") from exc
    if not all(0 <= value <= 5 for value in values):
        raise ConfigurationError(f"{name}: each pause is between 0 and 5 seconds, got {raw!r}")
    return values


def _flag(name: str, raw: str) -> bool:
    if raw.lower() in ("false", "0", "no", "true", "1", "yes"):
        return raw.lower() in ("true", "1", "yes")
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _text(name: str, raw: str) -> str:
    if not raw:  # only a setting without a default is read when blank
        raise ConfigurationError(f"environment variable {name} is required")
    return raw


def _url(name: str, raw: str) -> str:
    url = _text(name, raw).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"{name} must start with http:// or https://")
    return url


def _origins(name: str, raw: str) -> tuple[str, ...]:
    return tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())


@dataclass(frozen=True)
class Settings:
    backend_url: str = field(metadata={"rule": _url})
    connections_table: str = field(metadata={"rule": _text})
    api_gateway_endpoint: str | None = _setting(None, _url)
    connection_ttl_seconds: int = _setting(86400, _number(60, whole=True))
    #: The overall limit of one backend call (a route handler must answer within 29 s).
    backend_timeout_seconds: float = _setting(10.0, _number(0.1, under=29))
    fanout_workers: int = _setting(128, _number(1, whole=True))
    push_chunk_size: int = _setting(500, _number(1, whole=True))
    allowed_origins: tuple[str, ...] = _setting((), _origins)
    deliver_function_name: str | None = _setting(None, _text)
    fanout_function_name: str | None = _setting(None, _text)
    #: The cap on any HTTP answer's body (the backend's, the Management API's).
    max_response_bytes: int = _setting(4 * 1024 * 1024, _number(1024, whole=True))
    #: Attempts per DynamoDB and Lambda call (botocore's own variable).
    aws_max_attempts: int = _setting(5, _number(1, whole=True))
    #: The most connections the feed may have; a feed handshake beyond it is refused (0: no cap).
    max_feed_connections: int = _setting(0, _number(0, whole=True))
    #: Timings: the deferred delivery's pauses in all while a handshake completes; how
    #: young a connection answering 410 may still be in its handshake; the pauses between
    #: index lookups that miss; the first backoff of a Management API post's retries.
    deliver_retry_seconds: float = _setting(5.0, _number(0))
    handshake_grace_seconds: float = _setting(5.0, _number(0))
    lookup_retry_delays: tuple[float, ...] = _setting((0.05, 0.1, 0.2, 0.4), _pauses)
    post_retry_base_seconds: float = _setting(0.05, _number(0.001))
    routes: Mapping[str, Route] = field(
        default_factory=lambda: dict(DEFAULT_ROUTES),
        metadata={"rule": lambda name, raw: routes_with_overrides(raw), "name": "BACKEND_ROUTES"},
    )
    #: Booking channels one socket may subscribe to (besides its own).
    max_subscriptions: int = _setting(50, _number(0, whole=True))
    #: Whether joining and leaving a booking's channel broadcast ``presence_changed``.
    presence_events: bool = _setting(False, _flag)

    def endpoint_for(self, domain_name: str, stage: str) -> str:
        """``API_GATEWAY_ENDPOINT``, else ``https://{domainName}/{stage}`` of the event."""
        return self.api_gateway_endpoint or f"https://{domain_name}/{stage}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for setting in fields(cls):
            name = setting.metadata.get("name", setting.name.upper())
            raw = env.get(name, "").strip()
            if raw or (setting.default is MISSING and setting.default_factory is MISSING):
                values[setting.name] = setting.metadata["rule"](name, raw)
        return cls(**values)
