"""One summary log line per handler invocation, and no exception out of a handler.

Every use case runs its work inside ``HandlerRun``: it times the call, collects
the fields of the summary (route, connection id, outcome, counts), turns a
``ConfigurationError`` or any unexpected exception into the use case's fallback
answer, and logs exactly one record carrying ``summary=True`` (the local
gateway's terminal shows these). What the work ``note``s (each backend call, each
fan-out) goes into that record too, not into lines of its own: one JSON line per
message. Tokens and message bodies are never fields.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from chalicelib.errors import ConfigurationError, InvalidEvent

logger = logging.getLogger(__name__)

#: What a Lambda handler answers.
Answer = dict[str, Any]
#: The running handler's summary fields (unset outside a ``HandlerRun``, and on other threads).
_running: ContextVar[dict[str, Any] | None] = ContextVar("summary", default=None)


def note(field: str, message: str, record: dict[str, Any]) -> None:
    """``record`` appended to the running summary's list ``field``; outside a run, logged as ``message``."""
    log = _running.get()
    if log is None:
        logger.info(message, extra=record)
    else:
        log.setdefault(field, []).append(record)


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


#: The summary record's message for each route (the internal functions use their name).
_MESSAGES = {"$connect": "connect", "$default": "message", "$disconnect": "disconnect"}


def function_failure(route: str, outcome: str) -> Answer:
    """What an internal function (deliver, push, fanout) answers when its work raised."""
    what = (
        "the proxy is misconfigured" if outcome == "misconfigured" else f"the {route} could not be processed"
    )
    return {"error": {"code": outcome, "message": what}}


class HandlerRun:
    """``with HandlerRun(route) as run:`` then set ``run.result`` and ``run.log``.

    An ``InvalidEvent`` is answered ``invalid_event``. When the work raises anything
    else (``"misconfigured"`` for a ``ConfigurationError``, else ``"internal_error"``),
    the answer is ``on_failure(outcome)``: by default an internal function's
    (``function_failure``); the WebSocket routes give their own. If that fails too,
    it is logged and the answer is ``last_resort``.
    """

    def __init__(
        self,
        route: str,
        *,
        on_failure: Callable[[str], Answer] | None = None,
        last_resort: Answer | None = None,
    ) -> None:
        self.message = _MESSAGES.get(route, route)
        self.log: dict[str, Any] = {"route": route}
        self._on_failure = on_failure or (lambda outcome: function_failure(route, outcome))
        self._last_resort = last_resort or {"error": {"code": "internal_error"}}
        self.result: Answer | None = None

    def __enter__(self) -> HandlerRun:
        self._started = time.perf_counter()
        self._token = _running.set(self.log)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        _running.reset(self._token)
        if exc is not None and not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, SystemExit: not ours to swallow
        if isinstance(exc, InvalidEvent):
            logger.error("invalid event", extra={**self.log, "error": str(exc)})
            self.log["outcome"] = "invalid_event"
            self.result = {"error": {"code": "invalid_event", "message": str(exc)}}
        elif isinstance(exc, ConfigurationError):
            logger.error("configuration error", extra={**self.log, "error": str(exc)})
            self._fail("misconfigured")
        elif exc is not None:
            logger.error("%s failed", self.message, exc_info=exc, extra=self.log)
            self._fail("internal_error")
        self.log["duration_ms"] = elapsed_ms(self._started)
        logger.info(self.message, extra={**self.log, "summary": True})
        return True

    def _fail(self, outcome: str) -> None:
        self.log["outcome"] = outcome
        try:
            self.result = self._on_failure(outcome)
        except Exception:
            logger.exception("the fallback answer failed too", extra=self.log)

    def answer(self) -> Answer:
        """The result (set by the work, or by the fallback)."""
        return self._last_resort if self.result is None else self.result
