"""BackendClient: the proxy's calls to the FastAPI backend (CONTRACT.md §2).

One ``requests.Session`` per container (connection reuse), a timeout well
under API Gateway's 29 s, JSON in and out. The outcome is a dict (the
backend's 200 answer) or one of the ``ProxyError`` subclasses:

- 401 → ``Unauthorized``; 403 → ``Forbidden``; other 4xx → ``BackendError``
  carrying the backend's status (404 included);
- 5xx → ``BackendUnavailable`` (502); timeout → ``BackendUnavailable`` (504);
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

import logging
import time
from typing import Any

import requests

from chalicelib import protocol
from chalicelib.errors import BackendError, BackendUnavailable, Forbidden, Unauthorized

logger = logging.getLogger(__name__)


def new_session(pool_size: int = 10) -> requests.Session:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"Accept": "application/json", "User-Agent": "ws-proxy"})
    return session


class BackendClient:
    def __init__(self, base_url: str, session: requests.Session, timeout: float) -> None:
        self._base = base_url.rstrip("/")
        self._session = session
        # connect timeout bounded separately so a black-holed backend fails fast
        self._timeout = (min(3.05, timeout), timeout)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` as JSON to ``path``; the 200 answer, or a ``ProxyError``."""
        started = time.perf_counter()
        status: int | str = "error"
        try:
            try:
                response = self._session.post(self._base + path, json=body, timeout=self._timeout)
            except requests.Timeout as exc:
                status = "timeout"
                raise BackendUnavailable("the chat service timed out; try again", status=504) from exc
            except requests.RequestException as exc:
                status = "unreachable"
                raise BackendUnavailable("the chat service is unreachable; try again") from exc
            status = response.status_code
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
    def _detail(response: requests.Response) -> str | None:
        try:
            body = protocol.loads(response.content)
        except (ValueError, RecursionError):
            return None
        if isinstance(body, dict):
            detail = body.get("detail") or body.get("message")
            if isinstance(detail, str) and len(detail) <= 200:
                return protocol.as_text(detail)  # shown to the client: never a lone surrogate
        return None

    def _answer(self, response: requests.Response) -> dict[str, Any]:
        status = response.status_code
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
