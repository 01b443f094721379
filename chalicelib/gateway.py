"""ConnectionGateway: posting to WebSocket connections through the Management API.

Fan-out is CPU-bound before it is latency-bound, so each post costs as little
client CPU as it can (``bench/RESULTS.md`` has the measurements behind each
choice):

- SigV4 is computed by string formatting with the signing key derived once per
  day (``tests/unit/test_signing.py`` holds it to botocore's own ``SigV4Auth``,
  byte for byte), the payload serialized and hashed once per fan-out;
- the posts go out over the keep-alive connections of the proxy's one HTTP
  client (``chalicelib.transport``), each request written in one piece: a lone
  post blocks on a kept socket (no event loop), a fan-out's posts are many in
  flight on one event loop instead of threads contending for the GIL; SigV4 is
  ``chalicelib.signing``.

Outcomes of one post (docs/protocol.md):

- 200 → ``DELIVERED``;
- 410 → ``GONE`` (the connection is closed, or its handshake is not complete);
- 413 → ``TOO_LARGE``;
- 429 (``LimitExceededException``), 5xx, timeouts and broken connections are
  retried with capped, jittered exponential backoff (like botocore's
  ``standard`` retry mode), then ``FAILED``;
- anything else (400, 403) → ``FAILED`` at once;
- ``UNSENT``: only with a deadline, when no attempt could start before it.

A ``Deadline`` bounds a post or ``post_many``: no post is
started with less than ``RetryPolicy.min_post_seconds`` left, each attempt's
connect and read timeouts and each retry's sleep are cut to the time left, and a
fan-out answers the ids it never attempted in ``FanOutResult.unsent``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from chalicelib.deadline import Deadline
from chalicelib.model import FanOutResult, PostOutcome
from chalicelib.response_parser import HttpError
from chalicelib.signing import METHOD, Credentials, Signer
from chalicelib.transport import Transport, address

if TYPE_CHECKING:
    from botocore.credentials import ReadOnlyCredentials

logger = logging.getLogger(__name__)

_OUTCOMES = {200: PostOutcome.DELIVERED, 410: PostOutcome.GONE, 413: PostOutcome.TOO_LARGE}


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries for throttling (429) and transient failures (5xx, network)."""

    throttle_attempts: int = 6
    transient_attempts: int = 3
    base_delay: float = 0.05
    max_delay: float = 1.0
    #: With a deadline, an attempt (first or retry) starts only with this much time left.
    min_post_seconds: float = 0.1
    #: One attempt's whole time (connect, send, answer), whatever the deadline.
    attempt_seconds: float = 7.0

    def delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff for retry number ``attempt`` (1-based)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * (2 ** (attempt - 1))))  # noqa: S311 - jitter


class ConnectionGateway:
    """The ``@connections`` API of one WebSocket API stage: posts to one connection, or fans
    out to many, as many posts in flight as ``transport`` keeps connections per origin
    (``on_gone`` cleanups on ``executor``'s threads). ``sleep``: a lone post's pause between
    retries (a fan-out's is ``asyncio.sleep``)."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        credentials: Callable[[], Credentials | ReadOnlyCredentials],
        transport: Transport,
        *,
        executor: Executor | None = None,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._origin, self._base_path, self._host = address(endpoint)
        self.transport = transport
        self._credentials = credentials
        self._region = region
        self._executor = executor
        self._retry = retry
        self._sleep = sleep

    def path(self, connection_id: str) -> str:
        quoted = quote(connection_id, safe="~")
        if quoted in (".", ".."):  # a dot segment would be normalized away: send it encoded
            quoted = quoted.replace(".", "%2E")
        return f"{self._base_path}/@connections/{quoted}"

    def signer(self, data: bytes) -> Signer:
        return Signer(self._credentials(), self._region, self._host, hashlib.sha256(data).hexdigest())

    def post(self, connection_id: str, data: bytes, *, deadline: Deadline | None = None) -> PostOutcome:
        """One post, blocking on a kept socket: no event loop for a lone frame."""
        attempts = self._post(connection_id, data, self.signer(data), deadline, blocking=True)
        try:
            attempts.send(None)  # runs to its end: its socket calls and pauses block, nothing suspends
        except StopIteration as done:
            outcome: PostOutcome = done.value
            return outcome
        raise RuntimeError("a blocking post suspended")

    async def _post(
        self,
        connection_id: str,
        data: bytes,
        signer: Signer,
        deadline: Deadline | None,
        blocking: bool = False,
    ) -> PostOutcome:
        """Post one frame to one connection, retrying throttles and faults: ``blocking``, with
        ``transport.post`` and ``sleep`` (``post``), else on the running loop (``post_many``)."""
        retry = self._retry
        left = deadline.remaining if deadline is not None else lambda: math.inf
        if left() < retry.min_post_seconds:
            return PostOutcome.UNSENT
        path = self.path(connection_id)
        start = f"{METHOD} {path} HTTP/1.1\r\nHost: {self._host}\r\n"
        tries = {True: 0, False: 0}  # throttled (429); transient faults (5xx, network)
        last = False
        while True:
            lines = "".join(f"{name}: {value}\r\n" for name, value in signer.headers(path).items())
            request = f"{start}{lines}Content-Length: {len(data)}\r\n\r\n".encode() + data
            timeout = min(retry.attempt_seconds, left())
            try:
                if blocking:
                    response = self.transport.post(self._origin, request, timeout)
                else:
                    response = await self.transport.send(self._origin, request, timeout)
                status, reason = response.status, str(response.status)
            except HttpError as exc:
                status, reason = 0, str(exc)
            if status in _OUTCOMES:
                if status == 413:
                    logger.warning(
                        "post refused as too large",
                        extra={"connection_id": connection_id, "bytes": len(data)},
                    )
                return _OUTCOMES[status]
            throttled = status == 429
            if not (throttled or status == 0 or status >= 500):  # 400, 403: a retry would not help
                return _failed(connection_id, reason)
            tries[throttled] += 1
            if tries[throttled] >= (retry.throttle_attempts if throttled else retry.transient_attempts):
                return _failed(connection_id, reason)
            delay, room = retry.delay(tries[throttled]), left() - retry.min_post_seconds
            if room <= 0 or last:
                return _failed(connection_id, f"{reason}; no time left to retry")
            if delay >= room:  # the backoff is cut to the time left: this is the last try
                delay, last = room, True
            if blocking:
                self._sleep(delay)
            else:
                await asyncio.sleep(delay)
            if left() < retry.min_post_seconds and not last:  # the last try goes whatever a sleep overshot
                return _failed(connection_id, f"{reason}; no time left to retry")

    def post_many(
        self,
        connection_ids: Iterable[str],
        data: bytes,
        *,
        on_gone: Callable[[str], None] | None = None,
        deadline: Deadline | None = None,
    ) -> FanOutResult:
        """Post ``data`` to every id, ``transport.idle_per_origin`` at once, on this thread's event loop.

        ``on_gone`` runs (on the executor's threads) for each connection that
        answered 410, so stale items are removed while delivery goes on; the
        fan-out answers once every cleanup has finished. With ``deadline``, ids
        that could not be attempted in time come back in ``unsent``.
        """
        started = time.perf_counter()
        ids = list(connection_ids)
        result = FanOutResult()
        if not ids:
            return result
        signer = self.signer(data)
        outcomes = [PostOutcome.UNSENT] * len(ids)
        queue = iter(range(len(ids)))

        async def posts() -> None:
            loop = asyncio.get_running_loop()
            cleanups: list[asyncio.Future[None]] = []

            async def worker() -> None:
                for index in queue:
                    outcomes[index] = outcome = await self._post(ids[index], data, signer, deadline)
                    if outcome is PostOutcome.GONE and on_gone is not None:
                        cleanups.append(loop.run_in_executor(self._executor, _cleanup, on_gone, ids[index]))

            # one worker failing cancels the others: none is left on the loop to resume later
            async with asyncio.TaskGroup() as workers:
                for _ in range(min(self.transport.idle_per_origin, len(ids))):
                    workers.create_task(worker())
            await asyncio.gather(*cleanups)

        self.transport.run(posts())
        for connection_id, outcome in zip(ids, outcomes, strict=True):
            result.add(connection_id, outcome)
        result.duration_ms = round((time.perf_counter() - started) * 1000, 1)
        return result


def _failed(connection_id: str, reason: str) -> PostOutcome:
    logger.warning("post failed", extra={"connection_id": connection_id, "reason": reason})
    return PostOutcome.FAILED


def _cleanup(on_gone: Callable[[str], None], connection_id: str) -> None:
    try:
        on_gone(connection_id)
    except Exception:  # a failed cleanup must not stop delivery; TTL is the net
        logger.exception("stale connection cleanup failed", extra={"connection_id": connection_id})
