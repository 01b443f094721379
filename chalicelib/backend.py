"""BackendClient: the proxy's calls to the FastAPI backend (docs/backend.md).

JSON in and out over the proxy's one HTTP client (``chalicelib.transport``,
shared with the Management API posts), each call bounded by one overall
deadline: the smaller of ``BACKEND_TIMEOUT_SECONDS`` and the time the Lambda has
left (less a reserve), however slowly the backend answers. The outcome is a dict
(the backend's 200 answer) or one of the ``ProxyError`` subclasses:

- 401 → ``Unauthorized``; 403 → ``Forbidden``; other 4xx → ``BackendError``
  carrying the backend's status (404 included);
- 5xx → ``BackendUnavailable`` (502); past the deadline → ``BackendUnavailable`` (504);
  refused or broken connection → ``BackendUnavailable`` (502);
- a 200 whose body is not a JSON object → ``BackendError`` (502);
- an answer over ``MAX_RESPONSE_BYTES`` → ``BackendError`` (502), its connection closed.

Answers are returned as parsed: a lone surrogate in them (``"\\udc80"``) is
replaced by U+FFFD when a frame is encoded (``wire.encode``), never refused,
so one bad stored message cannot lock a booking's history. An error ``detail``
shown to the client has it replaced here.

Requests are never retried here: a message must not be posted twice. The
token is sent in the body and never logged.
"""

from __future__ import annotations

import json
import time
from typing import Any

from chalicelib import protocol, wire
from chalicelib.deadline import Deadline
from chalicelib.errors import BackendError, BackendUnavailable, Forbidden, Unauthorized
from chalicelib.response_parser import HttpError, HttpTimeout, Response, ResponseTooLarge
from chalicelib.summary import elapsed_ms, note
from chalicelib.transport import Transport, address


class BackendClient:
    def __init__(self, base_url: str, timeout: float, transport: Transport) -> None:
        self._origin, self._base_path, self._host = address(base_url)
        self._transport = transport
        self._timeout = timeout

    def post(self, path: str, body: dict[str, Any], *, deadline: Deadline | None = None) -> dict[str, Any]:
        """POST ``body`` as JSON to ``path``; the 200 answer, or a ``ProxyError``."""
        started = time.perf_counter()
        status: int | str = "error"
        limit = Deadline.after(self._timeout) if deadline is None else deadline.within(self._timeout)
        try:
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            head = (
                f"POST {self._base_path}{path} HTTP/1.1\r\nHost: {self._host}\r\n"
                "Content-Type: application/json\r\nAccept: application/json\r\nUser-Agent: ws-proxy\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            )
            try:
                response = self._transport.post(self._origin, head.encode() + data, limit.remaining())
            except HttpTimeout as exc:
                status = "timeout"
                raise BackendUnavailable("the chat service timed out; try again", status=504) from exc
            except ResponseTooLarge as exc:
                status = "too_large"
                raise BackendError("the chat service answered more than the proxy reads") from exc
            except HttpError as exc:
                status = "unreachable"
                raise BackendUnavailable("the chat service is unreachable; try again") from exc
            status = response.status
            return self._answer(response)
        finally:
            record = {"path": path, "status": status, "duration_ms": elapsed_ms(started)}
            note("backend_calls", "backend call", record)

    @staticmethod
    def _detail(response: Response) -> str | None:
        try:
            body = wire.loads(response.body)
        except (ValueError, RecursionError):
            return None
        if isinstance(body, dict):
            detail = body.get("detail") or body.get("message")
            if isinstance(detail, str) and len(detail) <= 200:
                return wire.as_text(detail)  # shown to the client: never a lone surrogate
        return None

    def _answer(self, response: Response) -> dict[str, Any]:
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
            body = wire.loads(response.body)
        except (ValueError, RecursionError):
            raise BackendError("the chat service answered with invalid JSON") from None
        if not isinstance(body, dict) or wire.depth_exceeds(body, protocol.MAX_ANSWER_DEPTH):
            raise BackendError("the chat service answered with something other than an object")
        return body
