"""ConnectionGateway: posting to WebSocket connections through the Management API.

Fan-out is CPU-bound before it is latency-bound (see docs), so each post is
signed with botocore's own SigV4 signer and sent over a shared, pooled
``urllib3`` connection: about half the client-side CPU of a boto3
``post_to_connection`` call. The payload is serialized and hashed once per
fan-out, not per connection.

Outcomes of one post (CONTRACT.md §3, "API Gateway facts"):

- 200 → ``DELIVERED``;
- 410 → ``GONE`` (the connection is closed, or its handshake is not complete);
- 413 → ``TOO_LARGE``;
- 429 (``LimitExceededException``), 5xx, timeouts and broken connections are
  retried with capped, jittered exponential backoff (like botocore's
  ``standard`` retry mode), then ``FAILED``;
- anything else (400, 403) → ``FAILED`` at once.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

logger = logging.getLogger(__name__)

_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com")


class PostOutcome(enum.Enum):
    DELIVERED = "delivered"
    GONE = "gone"
    TOO_LARGE = "too_large"
    FAILED = "failed"


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries for throttling (429) and transient failures (5xx, network)."""

    throttle_attempts: int = 6
    transient_attempts: int = 3
    base_delay: float = 0.05
    max_delay: float = 1.0

    def delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff for retry number ``attempt`` (1-based)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * (2 ** (attempt - 1))))


@dataclass
class FanOutResult:
    delivered: int = 0
    gone: list[str] = field(default_factory=list)
    too_large: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    duration_ms: float = 0.0

    @property
    def attempted(self) -> int:
        return self.delivered + len(self.gone) + len(self.too_large) + len(self.failed)

    def merge(self, other: FanOutResult) -> None:
        self.delivered += other.delivered
        self.gone += other.gone
        self.too_large += other.too_large
        self.failed += other.failed


def region_for(endpoint: str, env: Any = os.environ) -> str:
    """The signing region: Lambda's own, else the one in an execute-api host name."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if env.get(name):
            return str(env[name])
    match = _REGION_IN_HOST.search(urlsplit(endpoint).netloc)
    return match.group(1) if match else "us-east-1"


class _PrehashedSigV4(SigV4Auth):
    """SigV4 with the payload hash computed once for the whole fan-out."""

    def __init__(self, credentials: ReadOnlyCredentials, region: str, payload_hash: str) -> None:
        super().__init__(credentials, "execute-api", region)
        self._payload_hash = payload_hash

    def payload(self, request: Any) -> str:
        return self._payload_hash


class ManagementApi:
    """The ``@connections`` API of one WebSocket API stage, over a shared pool."""

    def __init__(
        self,
        endpoint: str,
        *,
        pool: urllib3.PoolManager,
        credentials: Callable[[], ReadOnlyCredentials],
        region: str,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._pool = pool
        self._credentials = credentials
        self._region = region
        self._retry = retry
        self._sleep = sleep

    def url(self, connection_id: str) -> str:
        return f"{self.endpoint}/@connections/{quote(connection_id, safe='~')}"

    def signer(self, data: bytes) -> _PrehashedSigV4:
        return _PrehashedSigV4(self._credentials(), self._region, hashlib.sha256(data).hexdigest())

    def _send(self, signer: _PrehashedSigV4, method: str, url: str, data: bytes) -> int:
        request = AWSRequest(method=method, url=url, data=data)
        if data:
            request.headers["Content-Type"] = "application/json"
        signer.add_auth(request)
        response = self._pool.urlopen(
            method,
            url,
            body=data or None,
            headers=dict(request.headers.items()),
            retries=False,
            redirect=False,
            preload_content=True,
        )
        return int(response.status)

    def post(self, connection_id: str, data: bytes, signer: _PrehashedSigV4 | None = None) -> PostOutcome:
        """Post one frame to one connection, retrying throttles and transient faults."""
        signer = signer or self.signer(data)
        url = self.url(connection_id)
        throttled = transient = 0
        while True:
            try:
                status = self._send(signer, "POST", url, data)
            except urllib3.exceptions.HTTPError as exc:
                status, reason = 0, type(exc).__name__
            else:
                reason = str(status)
            if status == 200:
                return PostOutcome.DELIVERED
            if status == 410:
                return PostOutcome.GONE
            if status == 413:
                return PostOutcome.TOO_LARGE
            if status == 429:
                throttled += 1
                if throttled >= self._retry.throttle_attempts:
                    return self._failed(connection_id, reason)
                self._sleep(self._retry.delay(throttled))
                continue
            if status == 0 or status >= 500:
                transient += 1
                if transient >= self._retry.transient_attempts:
                    return self._failed(connection_id, reason)
                self._sleep(self._retry.delay(transient))
                continue
            return self._failed(connection_id, reason)

    @staticmethod
    def _failed(connection_id: str, reason: str) -> PostOutcome:
        logger.warning("post failed", extra={"connection_id": connection_id, "reason": reason})
        return PostOutcome.FAILED


class ConnectionGateway:
    """Posts frames to one connection or fans them out to many, in parallel."""

    def __init__(self, api: ManagementApi, executor: ThreadPoolExecutor | None, workers: int) -> None:
        self.api = api
        self._executor = executor
        self._workers = workers

    @property
    def endpoint(self) -> str:
        return self.api.endpoint

    def post(self, connection_id: str, data: bytes) -> PostOutcome:
        return self.api.post(connection_id, data)

    def fan_out(
        self,
        connection_ids: Iterable[str],
        data: bytes,
        *,
        on_gone: Callable[[str], None] | None = None,
    ) -> FanOutResult:
        """Post ``data`` to every id, at most ``workers`` at once.

        ``on_gone`` runs (in the posting thread) for each connection that
        answered 410, so stale items are removed while delivery goes on.
        """
        started = time.perf_counter()
        signer = self.api.signer(data)
        result = FanOutResult()

        def one(connection_id: str) -> tuple[str, PostOutcome]:
            outcome = self.api.post(connection_id, data, signer)
            if outcome is PostOutcome.GONE and on_gone is not None:
                try:
                    on_gone(connection_id)
                except Exception:  # a failed cleanup must not stop delivery; TTL is the net
                    logger.exception(
                        "stale connection cleanup failed", extra={"connection_id": connection_id}
                    )
            return connection_id, outcome

        ids = list(connection_ids)
        if len(ids) <= 1 or self._executor is None or self._workers <= 1:
            outcomes: Iterable[tuple[str, PostOutcome]] = map(one, ids)
        else:
            outcomes = self._executor.map(one, ids)
        for connection_id, outcome in outcomes:
            if outcome is PostOutcome.DELIVERED:
                result.delivered += 1
            elif outcome is PostOutcome.GONE:
                result.gone.append(connection_id)
            elif outcome is PostOutcome.TOO_LARGE:
                result.too_large.append(connection_id)
            else:
                result.failed.append(connection_id)
        result.duration_ms = round((time.perf_counter() - started) * 1000, 1)
        return result


def new_pool(workers: int, *, connect_timeout: float = 2.0, read_timeout: float = 5.0) -> urllib3.PoolManager:
    """One keep-alive pool per container, as wide as the fan-out."""
    return urllib3.PoolManager(
        num_pools=8,
        maxsize=max(workers, 1),
        block=False,
        timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        retries=False,
    )
