"""Chalice wiring only: the WebSocket routes, the deferred delivery and push.

Every handler runs its use case on the container's clients (``get_clients``,
built on first use, once per container), or answers "misconfigured" when they
cannot be built.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent
from aws_lambda_powertools.utilities.typing import LambdaContext
from chalice.app import Chalice, WebsocketEvent

from chalicelib.clients import Clients, answer_with, build_clients, function_name
from chalicelib.connect import ConnectCase, DisconnectCase
from chalicelib.deadline import Deadline
from chalicelib.deliver import DeliverCase
from chalicelib.fanout import FanOutChunkCase
from chalicelib.message import MessageCase
from chalicelib.push import PushCase

app = Chalice(app_name="ws-proxy", configure_logs=False)
app.experimental_feature_flags.update(["WEBSOCKETS"])

logger = Logger(service="ws-proxy")
metrics = Metrics(namespace="WebSocketProxy", service="ws-proxy")
copy_config_to_registered_loggers(source_logger=logger, include={"chalicelib"})
_metric_lock = threading.Lock()
MISCONFIGURED = {"error": {"code": "misconfigured", "message": "the proxy is misconfigured"}}


def _metric(name: str, value: float) -> None:
    with _metric_lock:  # fan-out threads report too
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


@functools.cache
def get_clients() -> Clients:
    """The container's clients, built on first use (``get_clients.cache_clear()`` drops them)."""
    return build_clients(_metric)


# log_event stays False whatever the environment says: events carry tokens.
@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def _observed(respond: Callable[[], Any], context: Any) -> Any:
    """Powertools' work around every invocation (the context's keys on each log line, the
    metrics flushed after), its decorators applied once rather than per invocation."""
    return respond()


@app.middleware("all")
def _powertools(event: Any, get_response: Callable[[Any], Any]) -> Any:
    return _observed(lambda: get_response(event), event.context)


@app.on_ws_connect()
def connect(event: WebsocketEvent) -> dict[str, Any]:
    deadline = Deadline.from_context(event.context)
    return answer_with(
        get_clients,
        "$connect",
        {"statusCode": 500, "body": "the proxy is misconfigured"},
        lambda clients: ConnectCase(clients).handle(APIGatewayWebSocketEvent(event.to_dict()), deadline),
    )


@app.on_ws_message()
def message(event: WebsocketEvent) -> dict[str, Any]:
    deadline, name = Deadline.from_context(event.context), function_name(event.context)
    return answer_with(
        get_clients,
        "$default",
        {"statusCode": 500},
        lambda clients: MessageCase(clients).handle(
            APIGatewayWebSocketEvent(event.to_dict()), deadline, name
        ),
    )


@app.on_ws_disconnect()
def disconnect(event: WebsocketEvent) -> dict[str, Any]:
    deadline = Deadline.from_context(event.context)
    return answer_with(
        get_clients,
        "$disconnect",
        {"statusCode": 200},
        lambda clients: DisconnectCase(clients).handle(APIGatewayWebSocketEvent(event.to_dict()), deadline),
    )


@app.lambda_function(name="deliver")
def deliver(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Posts a new connection's initial frames once its handshake is complete."""
    deadline = Deadline.from_context(context)
    return answer_with(
        get_clients, "deliver", MISCONFIGURED, lambda clients: DeliverCase(clients).handle(event, deadline)
    )


@app.lambda_function(name="push")
def push(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Sends a backend payload to a booking, a user or the feed."""
    deadline, name = Deadline.from_context(context), function_name(context)
    return answer_with(
        get_clients, "push", MISCONFIGURED, lambda clients: PushCase(clients).handle(event, deadline, name)
    )


@app.lambda_function(name="fanout")
def fanout(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Internal: posts one chunk of a large fan-out, or a later attempt (never the backend's to call)."""
    deadline, name = Deadline.from_context(context), function_name(context)
    return answer_with(
        get_clients,
        "fanout",
        MISCONFIGURED,
        lambda clients: FanOutChunkCase(clients).handle(event, deadline, name),
    )
