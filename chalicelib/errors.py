"""The proxy's exceptions, one place, each mapped to an error code of docs/protocol.md.

``ProxyError`` is the base: every subclass carries ``code`` (the client-facing
machine code), ``retryable`` and, on ``$connect``, the handshake ``status``.
``ConfigurationError`` is not a ``ProxyError``: it means the deployment is
wrong, not the request, and is answered 500 on connect.
"""

from __future__ import annotations

from typing import Any


class ConfigurationError(Exception):
    """An environment variable is missing or malformed (docs/operations.md)."""


class InvalidEvent(ValueError):
    """An event the app sends itself (``deliver``, ``fanout``) that is not one; answered ``invalid_event``."""


class ProxyError(Exception):
    """A request the proxy answers with an error (status on connect, frame after)."""

    code = "backend_error"
    status = 502
    retryable = False

    def __init__(self, message: str, *, status: int | None = None, ref: Any = None) -> None:
        super().__init__(message)
        self.message = message
        #: The request's ``id`` when the error knows it (echoed as ``ref``); None otherwise.
        self.ref = ref
        if status is not None:
            self.status = status


class InvalidMessage(ProxyError):
    """The client's frame is not a JSON object, or the connect query is malformed."""

    code = "invalid_message"
    status = 400


class TooManySubscriptions(ProxyError):
    """A ``subscribe`` beyond ``MAX_SUBSCRIPTIONS`` for one socket."""

    code = "too_many_subscriptions"
    status = 400


class TooLarge(ProxyError):
    """A frame, or a payload for the client, exceeds the API Gateway message limit."""

    code = "too_large"
    status = 413


class UnknownConnection(ProxyError):
    """No live item exists for the connection id (after the GSI retry)."""

    code = "unknown_connection"
    status = 410


class Unauthorized(ProxyError):
    """Missing token, or the backend answered 401."""

    code = "unauthorized"
    status = 401


class Forbidden(ProxyError):
    """Origin not allowed, or the backend answered 403."""

    code = "forbidden"
    status = 403


class BackendError(ProxyError):
    """The backend answered 4xx (other than 401/403) or an unusable body."""

    code = "backend_error"
    status = 502


class BackendUnavailable(ProxyError):
    """5xx, timeout, refused connection, or our own AWS dependency failing."""

    code = "backend_unavailable"
    status = 502
    retryable = True


class DeliveryFailed(ProxyError):
    """A payload for the client could not be posted to its connection."""

    code = "delivery_failed"
    status = 502
