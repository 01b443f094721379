"""API Gateway WebSocket events as AWS delivers them to Lambda (one builder for all tests)."""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import time
from typing import Any

API_ID = "a1b2c3d4e5"
DOMAIN = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
STAGE = "development"
_counter = itertools.count(1)


def new_connection_id() -> str:
    """An id shaped like API Gateway's (base64-ish, ending in '=')."""
    return base64.b64encode(secrets.token_bytes(10)).decode()[:15] + "="


def _context(route: str, event_type: str, connection_id: str, **extra: Any) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    return {
        "routeKey": route,
        "eventType": event_type,
        "extendedRequestId": f"ext{next(_counter)}=",
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
        "messageDirection": "IN",
        "stage": STAGE,
        "connectedAt": now_ms,
        "requestTimeEpoch": now_ms,
        "identity": {"sourceIp": "203.0.113.7", "userAgent": "Mozilla/5.0"},
        "requestId": f"req{next(_counter)}=",
        "domainName": DOMAIN,
        "connectionId": connection_id,
        "apiId": API_ID,
        **extra,
    }


def connect_event(
    connection_id: str,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    base_headers = {
        "Host": DOMAIN,
        "Origin": "https://app.example.com",
        "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
        "Sec-WebSocket-Key": base64.b64encode(secrets.token_bytes(16)).decode(),
        "Sec-WebSocket-Version": "13",
        "X-Amzn-Trace-Id": "Root=1-5f84c7a9-0e5a8b1c2d3e4f5a6b7c8d9e",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    base_headers.update(headers or {})
    return {
        "headers": base_headers,
        "multiValueHeaders": {k: [v] for k, v in base_headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "requestContext": _context("$connect", "CONNECT", connection_id),
        "isBase64Encoded": False,
    }


def message_event(connection_id: str, body: Any, *, is_base64: bool = False) -> dict[str, Any]:
    if not isinstance(body, (str, type(None))):
        body = json.dumps(body)
    return {
        "requestContext": _context("$default", "MESSAGE", connection_id, messageId=f"msg{next(_counter)}="),
        "body": body,
        "isBase64Encoded": is_base64,
    }


def disconnect_event(connection_id: str, status: int = 1001) -> dict[str, Any]:
    return {
        "headers": {"Host": DOMAIN, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""},
        "multiValueHeaders": {"Host": [DOMAIN]},
        "requestContext": _context(
            "$disconnect",
            "DISCONNECT",
            connection_id,
            disconnectStatusCode=status,
            disconnectReason="Client-side close frame status code",
        ),
        "isBase64Encoded": False,
    }


class LambdaContext:
    """What Lambda hands a handler: its name, memory, and the time it has left."""

    def __init__(self, function_name: str = "handler", *, time_left_ms: float = 28_000) -> None:
        self.function_name = function_name
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.aws_request_id = f"req-{next(_counter)}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "stream"
        self._ends = time.monotonic() + time_left_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - time.monotonic()) * 1000))
