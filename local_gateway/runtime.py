"""Runs the app's handlers in-process the way Lambda would, one worker thread per call.

``AppRuntime`` imports ``app`` (the unmodified Chalice app), maps Lambda
function names to its handlers, hands each call a Lambda-shaped context, and
logs one readable line per invocation: route, connection, outcome and
duration. The outcome comes from the app's own summary record for the call:
each handler invocation logs exactly one record through a ``chalicelib``
logger with the attribute ``summary=True`` (docs/architecture.md), read in the
calling thread; only whitelisted fields are shown, never a token or a message
body.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from local_gateway.aws_shapes import LambdaContext

logger = logging.getLogger("local_gateway")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The deployed names are ``ws-proxy-{stage}-{name}``; the local stack's stage is ``local``.
FUNCTION_PREFIX = "ws-proxy-local"
_WEBSOCKET_HANDLERS = {"$connect": "connect", "$default": "message", "$disconnect": "disconnect"}
#: The app's functions that are invoked through the Lambda Invoke API rather than routed;
#: a name ending in one of these invokes it, when the app defines it.
INVOKED_FUNCTIONS = ("deliver", "push", "fanout")
#: The fields shown from a summary record.
_SHOWN = (
    "outcome",
    "type",
    "channel",
    "frames",
    "delivered",
    "gone",
    "failed",
    "queued",
    "attempt",
    "connections",
)


@dataclass
class Invocation:
    """What one handler call returned, or how it failed, and what the app logged about it."""

    route: str
    result: Any = None
    error: BaseException | None = None
    duration_ms: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.error is not None


def lambda_timeouts(
    config_path: Path = PROJECT_ROOT / ".chalice" / "config.json", stage: str = "dev"
) -> dict[str, float]:
    """Each function's timeout in seconds, by Chalice function name, as the stage deploys it.

    The app-wide ``lambda_timeout`` applies to every function (the key ``""``);
    the stage's and each function's own settings override it.
    """
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        return {"": 28.0}
    stage_config = config.get("stages", {}).get(stage, {})
    timeouts = {"": float(stage_config.get("lambda_timeout", config.get("lambda_timeout", 28)))}
    for name, function in stage_config.get("lambda_functions", {}).items():
        if "lambda_timeout" in function:
            timeouts[name] = float(function["lambda_timeout"])
    return timeouts


def is_summary(record: logging.LogRecord) -> bool:
    """Whether ``record`` is a handler's summary record: marked ``summary=True``, whatever its text."""
    return getattr(record, "summary", False) is True


class _SummaryCapture(logging.Handler):
    """Keeps, per thread, the fields of the app's summary record for the running call."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.local = threading.local()

    def start(self) -> None:
        self.local.summary = {}

    def take(self) -> dict[str, Any]:
        summary: dict[str, Any] = getattr(self.local, "summary", None) or {}
        self.local.summary = None
        return summary

    def emit(self, record: logging.LogRecord) -> None:
        summary = getattr(self.local, "summary", None)
        if summary is None or not is_summary(record):
            return
        for key in _SHOWN:
            value = record.__dict__.get(key)
            if value is not None:
                summary[key] = value


def function_key(name: str, functions: tuple[str, ...] = INVOKED_FUNCTIONS) -> str | None:
    """The one of ``functions`` a Lambda function name or ARN names, else None.

    Accepts ``ws-proxy-{stage}-deliver``, a bare ``deliver``, an ARN ending in
    either, and a ``:qualifier`` suffix.
    """
    if ":function:" in name:
        name = name.split(":function:", 1)[1]
    name = name.split(":", 1)[0]
    for key in functions:
        if name.endswith(key):
            return key
    return None


def load_app() -> ModuleType:
    """Import the project's ``app`` module (the Chalice app), from the project root."""
    root = str(PROJECT_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("app")


class AppRuntime:
    """The app's handlers, called in worker threads with Lambda-shaped contexts."""

    def __init__(
        self,
        app_module: ModuleType,
        *,
        region: str,
        verbose: bool = False,
        workers: int = 64,
        timeout: float | None = None,
    ) -> None:
        self.app = app_module
        self.region = region
        #: The invoked functions this app defines (``fanout`` only once the app has it).
        self.functions = tuple(f for f in INVOKED_FUNCTIONS if callable(getattr(app_module, f, None)))
        self.timeouts = {"": timeout} if timeout is not None else lambda_timeouts()
        # WebSocket routes and Lambda invocations get separate pools: a deferred delivery
        # waiting for a handshake must never hold up the $connect it is waiting for.
        self._routes = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda-ws")
        self._functions = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda-fn")
        self._capture = _SummaryCapture()
        logging.getLogger("chalicelib").addHandler(self._capture)
        if not verbose:
            quiet_app_logs()

    def close(self) -> None:
        logging.getLogger("chalicelib").removeHandler(self._capture)
        self._routes.shutdown(wait=True, cancel_futures=True)
        self._functions.shutdown(wait=True, cancel_futures=True)

    def function_key(self, name: str) -> str | None:
        """The app's function a Lambda function name or ARN invokes, else None (Lambda's 404)."""
        return function_key(name, self.functions)

    def function_name(self, route_or_key: str) -> str:
        if route_or_key in _WEBSOCKET_HANDLERS:
            return f"{FUNCTION_PREFIX}-websocket_{_WEBSOCKET_HANDLERS[route_or_key]}"
        return f"{FUNCTION_PREFIX}-{route_or_key}"

    def _call(self, route: str, handler: Callable[..., Any], event: Any, function_name: str) -> Invocation:
        invocation = Invocation(route)
        chalice_name = f"websocket_{_WEBSOCKET_HANDLERS[route]}" if route in _WEBSOCKET_HANDLERS else route
        timeout = self.timeouts.get(chalice_name, self.timeouts[""])
        context = LambdaContext(function_name, timeout_seconds=timeout, region=self.region)
        self._capture.start()
        started = time.perf_counter()
        try:
            invocation.result = handler(event, context)
        except Exception as exc:  # what Lambda reports as an unhandled function error
            invocation.error = exc
            logger.error("%s raised %s", function_name, type(exc).__name__, exc_info=exc)
        finally:
            invocation.duration_ms = round((time.perf_counter() - started) * 1000, 1)
            invocation.summary = self._capture.take()
        return invocation

    async def websocket(self, route: str, event: Mapping[str, Any]) -> Invocation:
        """Run the handler of ``$connect`` / ``$default`` / ``$disconnect`` in a worker thread."""
        handler = getattr(self.app, _WEBSOCKET_HANDLERS[route])
        loop = asyncio.get_running_loop()
        invocation = await loop.run_in_executor(
            self._routes, self._call, route, handler, dict(event), self.function_name(route)
        )
        connection_id = event["requestContext"]["connectionId"]
        status = None
        if route == "$connect" and isinstance(invocation.result, dict):
            status = invocation.result.get("statusCode", 200)
        extra = ""
        if route == "$disconnect":
            ctx = event["requestContext"]
            extra = f"close={ctx['disconnectStatusCode']}"
        log_line(route, connection_id, status, invocation, extra)
        return invocation

    async def invoke(self, key: str, function_name: str, event: Any) -> Invocation:
        """Run ``deliver``, ``push`` or ``fanout`` in a worker thread, as a Lambda invocation would."""
        handler = getattr(self.app, key)
        loop = asyncio.get_running_loop()
        invocation = await loop.run_in_executor(
            self._functions, self._call, key, handler, event, function_name
        )
        connection_id = event.get("connection_id") if isinstance(event, dict) else None
        log_line(key, str(connection_id or "-"), None, invocation, "")
        return invocation


def quiet_app_logs() -> None:
    """Keep the app's JSON log lines to warnings and errors; the readable lines say the rest.

    The app's handlers write to the ``ws-proxy`` logger (Chalice's and
    Powertools') and the ``chalicelib`` loggers share those handlers; only the
    handlers' levels change, so the records still reach the summary capture.
    """
    for name in ("ws-proxy", "chalicelib"):
        for handler in logging.getLogger(name).handlers:
            if not isinstance(handler, _SummaryCapture):
                handler.setLevel(logging.WARNING)


def log_line(route: str, connection_id: str, status: int | None, invocation: Invocation, extra: str) -> None:
    summary = dict(invocation.summary)
    outcome = "error" if invocation.failed else str(summary.pop("outcome", "ok"))
    details = " ".join(f"{k}={v}" for k, v in summary.items())
    parts = [f"{route:<12}", f"{connection_id:<16}"]
    if status is not None:
        parts.append(str(status))
    parts.append(outcome)
    if extra:
        parts.append(extra)
    if details:
        parts.append(details)
    parts.append(f"{invocation.duration_ms:.1f} ms")
    logger.info(" ".join(parts))
