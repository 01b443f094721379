"""Chalice wiring only: the WebSocket routes, the deferred delivery and push.

Every handler hands its event to its use case through ``chalicelib.container``,
which builds the dependencies lazily, once per container.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from chalice.app import Chalice, ConvertToMiddleware, WebsocketEvent

from chalicelib.container import Container

app = Chalice(app_name="ws-proxy", configure_logs=False)
app.experimental_feature_flags.update(["WEBSOCKETS"])

logger = Logger(service="ws-proxy")
metrics = Metrics(namespace="WebSocketProxy", service="ws-proxy")
copy_config_to_registered_loggers(source_logger=logger, include={"chalicelib"})
_metric_lock = threading.Lock()


def _metric(name: str, value: float) -> None:
    with _metric_lock:  # fan-out threads report too
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


container = Container(metric=_metric)
# log_event stays False whatever the environment says: events carry tokens.
app.register_middleware(
    ConvertToMiddleware(functools.partial(logger.inject_lambda_context, log_event=False)), "all"
)
app.register_middleware(ConvertToMiddleware(metrics.log_metrics), "all")


@app.on_ws_connect()
def connect(event: WebsocketEvent) -> dict[str, Any]:
    return container.connect(event.to_dict(), event.context)


@app.on_ws_message()
def message(event: WebsocketEvent) -> dict[str, Any]:
    return container.message(event.to_dict(), event.context)


@app.on_ws_disconnect()
def disconnect(event: WebsocketEvent) -> dict[str, Any]:
    return container.disconnect(event.to_dict(), event.context)


@app.lambda_function(name="deliver")
def deliver(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Posts a new connection's initial frames once its handshake is complete."""
    return container.deliver(event, context)


@app.lambda_function(name="push")
def push(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Sends a backend payload to a booking, a user or the feed."""
    return container.push(event, context)


@app.lambda_function(name="fanout")
def fanout(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Internal: posts one chunk of a large fan-out, or a later attempt (never the backend's to call)."""
    return container.fanout(event, context)
