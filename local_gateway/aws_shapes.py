"""API Gateway-shaped WebSocket events and Lambda-shaped contexts.

The shapes follow what API Gateway hands a Lambda proxy integration for
``$connect``, ``$default`` and ``$disconnect``, and what the Lambda Python
runtime passes as ``context``, so the app's handlers (and Powertools'
``inject_lambda_context``) see what they would see in AWS.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ACCOUNT_ID = "123456789012"


def new_connection_id() -> str:
    """A connection id shaped like API Gateway's: 16 characters, URL-safe base64, ending in '='."""
    return base64.urlsafe_b64encode(os.urandom(11)).decode("ascii")


def new_request_id() -> str:
    """An id shaped like API Gateway's ``requestId`` / ``extendedRequestId``."""
    return base64.urlsafe_b64encode(os.urandom(11)).decode("ascii")


def new_api_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(alphabet[b % len(alphabet)] for b in os.urandom(10))


def request_time(epoch_ms: int) -> str:
    """API Gateway's ``requestTime``: ``25/Nov/2025:18:44:01 +0000``."""
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch_ms / 1000))


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Identity:
    source_ip: str
    user_agent: str | None


@dataclass
class SocketInfo:
    """What API Gateway knows about one connection, for its events."""

    connection_id: str
    api_id: str
    stage: str
    domain_name: str
    identity: Identity
    connected_at: int = field(default_factory=now_ms)


def _request_context(info: SocketInfo, route_key: str, event_type: str) -> dict[str, Any]:
    epoch = now_ms()
    request_id = new_request_id()
    identity: dict[str, Any] = {"sourceIp": info.identity.source_ip}
    if info.identity.user_agent is not None:
        identity["userAgent"] = info.identity.user_agent
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": request_time(epoch),
        "messageDirection": "IN",
        "stage": info.stage,
        "connectedAt": info.connected_at,
        "requestTimeEpoch": epoch,
        "identity": identity,
        "requestId": request_id,
        "domainName": info.domain_name,
        "connectionId": info.connection_id,
        "apiId": info.api_id,
    }


def _single_and_multi(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """API Gateway's ``x`` (last value wins) and ``multiValueX`` (all values) maps."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        single[key] = value
        multi.setdefault(key, []).append(value)
    return single, multi


def connect_event(
    info: SocketInfo, headers: Iterable[tuple[str, str]], query: Iterable[tuple[str, str]]
) -> dict[str, Any]:
    """The ``$connect`` event: handshake headers and query string."""
    single_headers, multi_headers = _single_and_multi(headers)
    single_query, multi_query = _single_and_multi(query)
    event: dict[str, Any] = {
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "requestContext": _request_context(info, "$connect", "CONNECT"),
        "isBase64Encoded": False,
    }
    if single_query:  # API Gateway omits both when there is no query string
        event["queryStringParameters"] = single_query
        event["multiValueQueryStringParameters"] = multi_query
    return event


def message_event(info: SocketInfo, data: str | bytes) -> dict[str, Any]:
    """The ``$default`` event: a text frame as ``body``, a binary one base64-encoded."""
    context = _request_context(info, "$default", "MESSAGE")
    context["messageId"] = new_request_id()
    if isinstance(data, bytes):
        return {
            "requestContext": context,
            "body": base64.b64encode(data).decode("ascii"),
            "isBase64Encoded": True,
        }
    return {"requestContext": context, "body": data, "isBase64Encoded": False}


def disconnect_event(info: SocketInfo, status_code: int, reason: str) -> dict[str, Any]:
    """The ``$disconnect`` event, with the close code and reason API Gateway reports."""
    context = _request_context(info, "$disconnect", "DISCONNECT")
    context["disconnectStatusCode"] = status_code
    context["disconnectReason"] = reason
    headers = {"Host": info.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    return {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }


class LambdaContext:
    """The attributes and method of the Lambda Python runtime's context object."""

    def __init__(
        self, function_name: str, *, timeout_seconds: float, memory_mb: int = 512, region: str = "us-east-1"
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        day = time.strftime("%Y/%m/%d", time.gmtime())
        self.log_stream_name = f"{day}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
