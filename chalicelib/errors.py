"""The proxy's exceptions, one place, each mapped to an error code of docs/protocol.md.

``ProxyError`` is the base: every subclass names, in its class line, its ``code``
(the client-facing machine code), its handshake ``status`` on ``$connect`` and
whether it is ``retryable``. ``ConfigurationError`` is not a ``ProxyError``: it
means the deployment is wrong, not the request, and is answered 500 on connect.
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

    def __init_subclass__(cls, *, code: str, status: int, retryable: bool = False) -> None:
        cls.code, cls.status, cls.retryable = code, status, retryable

    def __init__(self, message: str, *, status: int | None = None, ref: Any = None) -> None:
        super().__init__(message)
        self.message = message
        #: The request's ``id`` when the error knows it (echoed as ``ref``); None otherwise.
        self.ref = ref
        if status is not None:
            self.status = status


class InvalidMessage(ProxyError, code="invalid_message", status=400):
    """The client's frame is not a JSON object, or the connect query is malformed."""


class TooManySubscriptions(ProxyError, code="too_many_subscriptions", status=400):
    """A ``subscribe`` beyond ``MAX_SUBSCRIPTIONS`` for one socket."""


class TooLarge(ProxyError, code="too_large", status=413):
    """A frame, or a payload for the client, exceeds the API Gateway message limit."""


class UnknownConnection(ProxyError, code="unknown_connection", status=410):
    """No live item exists for the connection id (after the GSI retry)."""


class ChannelFull(ProxyError, code="channel_full", status=429, retryable=True):
    """The channel already has as many connections as it may (``MAX_FEED_CONNECTIONS``)."""


class Unauthorized(ProxyError, code="unauthorized", status=401):
    """Missing token, or the backend answered 401."""


class Forbidden(ProxyError, code="forbidden", status=403):
    """Origin not allowed, or the backend answered 403."""


class BackendError(ProxyError, code="backend_error", status=502):
    """The backend answered 4xx (other than 401/403) or an unusable body."""


class BackendUnavailable(ProxyError, code="backend_unavailable", status=502, retryable=True):
    """5xx, timeout, refused connection, or our own AWS dependency failing."""


class DeliveryFailed(ProxyError, code="delivery_failed", status=502):
    """A payload for the client could not be posted to its connection."""
