"""API Gateway WebSocket events as AWS delivers them to Lambda, for tests.

The shapes come from the local stack's builders (``local_gateway.aws_shapes``, the
project's one builder, which the local gateway feeds the handlers with); this module
gives them a test's defaults: one API (``API_ID``, ``DOMAIN``, ``STAGE``), a browser's
handshake headers, and a body given as JSON or as it is.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from local_gateway import aws_shapes

API_ID = "a1b2c3d4e5"
DOMAIN = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
STAGE = "development"
#: What a browser's handshake carries through API Gateway (Sec-WebSocket-Key is added per event).
HANDSHAKE_HEADERS = {
    "Host": DOMAIN,
    "Origin": "https://app.example.com",
    "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
    "Sec-WebSocket-Version": "13",
    "X-Amzn-Trace-Id": "Root=1-5f84c7a9-0e5a8b1c2d3e4f5a6b7c8d9e",
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Port": "443",
    "X-Forwarded-Proto": "https",
}


def _socket(connection_id: str) -> aws_shapes.SocketInfo:
    identity = aws_shapes.Identity("203.0.113.7", "Mozilla/5.0")
    return aws_shapes.SocketInfo(connection_id, API_ID, STAGE, DOMAIN, identity)


def connect_event(
    connection_id: str,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A ``$connect`` event: the connect query (``type``, ``booking_id``, ``token``) and headers
    added to (or replacing) a browser's ``HANDSHAKE_HEADERS``."""
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    sent = {**HANDSHAKE_HEADERS, "Sec-WebSocket-Key": key, **(headers or {})}
    return aws_shapes.connect_event(_socket(connection_id), sent.items(), (query or {}).items())


def message_event(connection_id: str, body: Any, *, is_base64: bool = False) -> dict[str, Any]:
    """A ``$default`` event: ``body`` as given when it is a str (or None), else as JSON."""
    if not isinstance(body, (str, type(None))):
        body = json.dumps(body)
    event = aws_shapes.message_event(_socket(connection_id), "")
    event.update(body=body, isBase64Encoded=is_base64)
    return event


def disconnect_event(connection_id: str, status: int = 1001) -> dict[str, Any]:
    """A ``$disconnect`` event with the close code API Gateway reports (1001: going away)."""
    return aws_shapes.disconnect_event(_socket(connection_id), status, "Client-side close frame status code")


class LambdaContext(aws_shapes.LambdaContext):
    """What Lambda hands a handler, with ``time_left_ms`` before its deadline."""

    def __init__(self, function_name: str = "handler", *, time_left_ms: float = 28_000) -> None:
        super().__init__(function_name, timeout_seconds=time_left_ms / 1000)
