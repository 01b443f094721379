"""Settings read once from the environment (docs/operations.md, "Settings").

``Settings.from_env()`` is called lazily by the app's factories, never at
import, so ``chalice package`` and test imports need no environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from chalicelib.errors import ConfigurationError
from chalicelib.routes import DEFAULT_ROUTES, Route, routes_with_overrides


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is required")
    return value


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from exc
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    value = _number(env, name, default, minimum=minimum)
    if value != int(value):
        raise ConfigurationError(f"{name} must be a whole number, got {env.get(name)!r}")
    return int(value)


def _numbers(env: Mapping[str, str], name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        values = tuple(float(part) for part in raw.split(","))
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be numbers separated by commas, got {raw!r}") from exc
    if any(value < 0 or value > 5 for value in values):
        raise ConfigurationError(f"{name}: each pause is between 0 and 5 seconds, got {raw!r}")
    return values


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise ConfigurationError(f"{name} must be true or false, got {env.get(name)!r}")


@dataclass(frozen=True)
class Settings:
    backend_url: str
    connections_table: str
    api_gateway_endpoint: str | None = None
    connection_ttl_seconds: int = 86400
    backend_timeout_seconds: float = 10.0
    fanout_workers: int = 128
    push_chunk_size: int = 500
    allowed_origins: tuple[str, ...] = ()
    deliver_function_name: str | None = None
    fanout_function_name: str | None = None
    #: The cap on any HTTP answer's body (the backend's, the Management API's).
    max_response_bytes: int = 4 * 1024 * 1024
    #: Attempts per DynamoDB and Lambda call (botocore's own variable).
    aws_max_attempts: int = 5
    #: Timings: the deferred delivery's pauses in all while a handshake completes; how
    #: young a connection answering 410 may still be in its handshake; the pauses between
    #: index lookups that miss; the first backoff of a Management API post's retries.
    deliver_retry_seconds: float = 5.0
    handshake_grace_seconds: float = 5.0
    lookup_retry_delays: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
    post_retry_base_seconds: float = 0.05
    routes: Mapping[str, Route] = field(default_factory=lambda: dict(DEFAULT_ROUTES))
    #: Booking channels one socket may subscribe to (besides its own).
    max_subscriptions: int = 50
    #: Whether joining and leaving a booking's channel broadcast ``presence_changed``.
    presence_events: bool = False

    def endpoint_for(self, domain_name: str, stage: str) -> str:
        """``API_GATEWAY_ENDPOINT``, else ``https://{domainName}/{stage}`` of the event."""
        return self.api_gateway_endpoint or f"https://{domain_name}/{stage}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        backend_url = _required(env, "BACKEND_URL").rstrip("/")
        if not backend_url.startswith(("http://", "https://")):
            raise ConfigurationError("BACKEND_URL must start with http:// or https://")
        endpoint = env.get("API_GATEWAY_ENDPOINT", "").strip().rstrip("/") or None
        if endpoint and not endpoint.startswith(("http://", "https://")):
            raise ConfigurationError("API_GATEWAY_ENDPOINT must start with http:// or https://")
        timeout = _number(env, "BACKEND_TIMEOUT_SECONDS", 10.0, minimum=0.1)
        if timeout >= 29:
            raise ConfigurationError(
                "BACKEND_TIMEOUT_SECONDS must stay under API Gateway's 29 s integration limit"
            )
        origins = tuple(o.strip().rstrip("/") for o in env.get("ALLOWED_ORIGINS", "").split(",") if o.strip())
        return cls(
            backend_url=backend_url,
            connections_table=_required(env, "CONNECTIONS_TABLE"),
            api_gateway_endpoint=endpoint,
            connection_ttl_seconds=_integer(env, "CONNECTION_TTL_SECONDS", 86400, minimum=60),
            backend_timeout_seconds=timeout,
            fanout_workers=_integer(env, "FANOUT_WORKERS", 128, minimum=1),
            push_chunk_size=_integer(env, "PUSH_CHUNK_SIZE", 500, minimum=1),
            allowed_origins=origins,
            deliver_function_name=env.get("DELIVER_FUNCTION_NAME", "").strip() or None,
            fanout_function_name=env.get("FANOUT_FUNCTION_NAME", "").strip() or None,
            max_response_bytes=_integer(env, "MAX_RESPONSE_BYTES", 4 * 1024 * 1024, minimum=1024),
            aws_max_attempts=_integer(env, "AWS_MAX_ATTEMPTS", 5, minimum=1),
            deliver_retry_seconds=_number(env, "DELIVER_RETRY_SECONDS", 5.0, minimum=0),
            handshake_grace_seconds=_number(env, "HANDSHAKE_GRACE_SECONDS", 5.0, minimum=0),
            lookup_retry_delays=_numbers(env, "LOOKUP_RETRY_DELAYS", (0.05, 0.1, 0.2, 0.4)),
            post_retry_base_seconds=_number(env, "POST_RETRY_BASE_SECONDS", 0.05, minimum=0.001),
            routes=routes_with_overrides(env.get("BACKEND_ROUTES")),
            max_subscriptions=_integer(env, "MAX_SUBSCRIPTIONS", 50, minimum=0),
            presence_events=_flag(env, "PRESENCE_EVENTS"),
        )
