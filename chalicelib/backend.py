"""BackendClient: the proxy's calls to the FastAPI backend (docs/backend.md).

One kept-alive connection pool per container (``deadline_http.HttpClient``),
JSON in and out, each call bounded by one overall deadline: the smaller of
``BACKEND_TIMEOUT_SECONDS`` and the time the Lambda has left (less a reserve),
however slowly the backend answers. The outcome is a dict (the backend's 200
answer) or one of the ``ProxyError`` subclasses:

- 401 → ``Unauthorized``; 403 → ``Forbidden``; other 4xx → ``BackendError``
  carrying the backend's status (404 included);
- 5xx → ``BackendUnavailable`` (502); past the deadline → ``BackendUnavailable`` (504);
  refused or broken connection → ``BackendUnavailable`` (502);
- a 200 whose body is not a JSON object → ``BackendError`` (502).

Answers are returned as parsed: a lone surrogate in them (``"\\udc80"``) is
replaced by U+FFFD when a frame is encoded (``protocol.encode``), never refused,
so one bad stored message cannot lock a booking's history. An error ``detail``
shown to the client has it replaced here.

Requests are never retried here: a message must not be posted twice. The
token is sent in the body and never logged.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from chalicelib import protocol
from chalicelib.deadline import Deadline
from chalicelib.deadline_http import ConnectionFailed, DeadlineExceeded, HttpClient, HttpResponse
from chalicelib.errors import BackendError, BackendUnavailable, Forbidden, Unauthorized

logger = logging.getLogger(__name__)

#: Sent with every call.
HEADERS = {"Accept": "application/json", "User-Agent": "ws-proxy"}


class BackendClient:
    def __init__(self, base_url: str, timeout: float, *, http: HttpClient | None = None) -> None:
        self._http = http or HttpClient(base_url, headers=HEADERS)
        self._timeout = timeout

    def post(self, path: str, body: dict[str, Any], *, deadline: Deadline | None = None) -> dict[str, Any]:
        """POST ``body`` as JSON to ``path``; the 200 answer, or a ``ProxyError``."""
        started = time.perf_counter()
        status: int | str = "error"
        limit = Deadline.after(self._timeout) if deadline is None else deadline.within(self._timeout)
        try:
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            try:
                response = self._http.post(path, data, limit)
            except DeadlineExceeded as exc:
                status = "timeout"
                raise BackendUnavailable("the chat service timed out; try again", status=504) from exc
            except ConnectionFailed as exc:
                status = "unreachable"
                raise BackendUnavailable("the chat service is unreachable; try again") from exc
            status = response.status
            return self._answer(response)
        finally:
            logger.info(
                "backend call",
                extra={
                    "path": path,
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )

    @staticmethod
    def _detail(response: HttpResponse) -> str | None:
        try:
            body = protocol.loads(response.content)
        except (ValueError, RecursionError):
            return None
        if isinstance(body, dict):
            detail = body.get("detail") or body.get("message")
            if isinstance(detail, str) and len(detail) <= 200:
                return protocol.as_text(detail)  # shown to the client: never a lone surrogate
        return None

    def _answer(self, response: HttpResponse) -> dict[str, Any]:
        status = response.status
        if status == 401:
            raise Unauthorized(self._detail(response) or "the token was not accepted")
        if status == 403:
            raise Forbidden(self._detail(response) or "not allowed")
        if 400 <= status < 500:
            raise BackendError(
                self._detail(response) or f"the chat service refused the request ({status})",
                status=status,
            )
        if status >= 500:
            raise BackendUnavailable("the chat service failed; try again")
        if status != 200:
            raise BackendError(f"the chat service answered an unexpected status {status}")
        try:
            body = protocol.loads(response.content)
        except (ValueError, RecursionError):
            raise BackendError("the chat service answered with invalid JSON") from None
        if not isinstance(body, dict) or protocol.depth_exceeds(body, protocol.MAX_ANSWER_DEPTH):
            raise BackendError("the chat service answered with something other than an object")
        return body
