"""ConnectionGateway: posting to WebSocket connections through the Management API.

Fan-out is CPU-bound before it is latency-bound, so each post costs as little
client CPU as it can: SigV4 is computed by string formatting with the signing
key derived once per day (``tests/unit/test_signing.py`` holds it to botocore's
own ``SigV4Auth``, byte for byte), the payload is serialized and hashed once per
fan-out, and the request goes by path to the host's keep-alive pool. That is
about a third of the client CPU of a boto3 ``post_to_connection`` call.

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

import datetime
import enum
import hashlib
import hmac
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
from botocore.credentials import ReadOnlyCredentials

logger = logging.getLogger(__name__)

_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com")


class PostOutcome(enum.Enum):
    DELIVERED = "delivered"
    GONE = "gone"
    TOO_LARGE = "too_large"
    FAILED = "failed"
    #: Not attempted: too little time was left before the deadline.
    UNSENT = "unsent"


#: Socket timeouts of a post (both capped to the time left before a deadline).
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 5.0
#: A post is not started with less time than this left before its deadline.
MIN_POST_SECONDS = 0.25


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
    #: Never attempted: the deadline was too close (not part of ``attempted``).
    unsent: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return self.delivered + len(self.gone) + len(self.too_large) + len(self.failed)

    def merge(self, other: FanOutResult) -> None:
        self.delivered += other.delivered
        self.gone += other.gone
        self.too_large += other.too_large
        self.failed += other.failed
        self.unsent += other.unsent


def region_for(endpoint: str, env: Any = os.environ) -> str:
    """The signing region: Lambda's own, else the one in an execute-api host name."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if env.get(name):
            return str(env[name])
    match = _REGION_IN_HOST.search(urlsplit(endpoint).netloc)
    return match.group(1) if match else "us-east-1"


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _signing_host(endpoint: str) -> str:
    """The ``host`` header as sent (and signed): the port only when it is not the default."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        return f"{host}:{parts.port}"
    return host


class Signer:
    """SigV4 for ``POST {stage}/@connections/{id}`` with one payload, for one fan-out.

    The same computation as botocore's ``SigV4Auth`` for this one request shape
    (signed headers ``content-type``, ``host``, ``x-amz-date`` and, with session
    credentials, ``x-amz-security-token``; the path encoded twice, as botocore does
    for every service but S3), without building an ``AWSRequest`` per post.
    """

    _keys: dict[tuple[str, str, str], bytes] = {}

    def __init__(self, credentials: ReadOnlyCredentials, region: str, host: str, payload_hash: str) -> None:
        self._credentials = credentials
        self._region = region
        self._host = host
        self._payload_hash = payload_hash
        token = credentials.token
        self._signed = "content-type;host;x-amz-date" + (";x-amz-security-token" if token else "")
        self._token_line = f"x-amz-security-token:{token}\n" if token else ""

    def _key(self, date: str) -> bytes:
        cache_key = (self._credentials.secret_key, self._region, date)
        key = Signer._keys.get(cache_key)
        if key is None:
            key = hmac.new(
                f"AWS4{self._credentials.secret_key}".encode(), date.encode(), hashlib.sha256
            ).digest()
            for part in (self._region, "execute-api", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            Signer._keys = {cache_key: key}  # one day's key for the current credentials
        return key

    def headers(self, path: str, amz_date: str | None = None) -> dict[str, str]:
        """The headers that sign a POST of the payload to ``path`` (already URL-quoted once)."""
        if amz_date is None:
            amz_date = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        date = amz_date[:8]
        canonical = (
            f"POST\n{quote(path, safe='/~')}\n\ncontent-type:application/json\nhost:{self._host}\n"
            f"x-amz-date:{amz_date}\n{self._token_line}\n{self._signed}\n{self._payload_hash}"
        )
        scope = f"{date}/{self._region}/execute-api/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._key(date), to_sign.encode(), hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Amz-Date": amz_date,
            "Authorization": (
                f"AWS4-HMAC-SHA256 Credential={self._credentials.access_key}/{scope}, "
                f"SignedHeaders={self._signed}, Signature={signature}"
            ),
        }
        if self._credentials.token:
            headers["X-Amz-Security-Token"] = self._credentials.token
        return headers


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
        parts = urlsplit(self.endpoint)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path
        self._host = _signing_host(self.endpoint)
        self._host_pool = pool.connection_from_url(self.endpoint)
        self._credentials = credentials
        self._region = region
        self._retry = retry
        self._sleep = sleep

    def path(self, connection_id: str) -> str:
        quoted = quote(connection_id, safe="~")
        if quoted in (".", ".."):  # a dot segment would be normalized away: send it encoded
            quoted = quoted.replace(".", "%2E")
        return f"{self._base_path}/@connections/{quoted}"

    def url(self, connection_id: str) -> str:
        return f"{self._origin}{self.path(connection_id)}"

    def signer(self, data: bytes) -> Signer:
        return Signer(self._credentials(), self._region, self._host, hashlib.sha256(data).hexdigest())

    def _send(self, signer: Signer, path: str, data: bytes, time_left: float | None) -> int:
        timeout: Any = urllib3.util.Timeout.DEFAULT_TIMEOUT
        if time_left is not None:
            timeout = urllib3.Timeout(
                connect=min(time_left, CONNECT_TIMEOUT), read=min(time_left, READ_TIMEOUT)
            )
        response = self._host_pool.urlopen(
            "POST",
            path,
            body=data,
            headers=signer.headers(path),
            retries=False,
            redirect=False,
            preload_content=True,
            timeout=timeout,
        )
        return int(response.status)

    def post(
        self,
        connection_id: str,
        data: bytes,
        signer: Signer | None = None,
        *,
        deadline: float | None = None,
    ) -> PostOutcome:
        """Post one frame to one connection, retrying throttles and transient faults.

        With a ``deadline`` (a ``time.monotonic()`` instant) no attempt starts with
        less than ``MIN_POST_SECONDS`` left, and none runs past it: ``UNSENT`` when
        the first attempt could not start, ``FAILED`` when a retry could not.
        """
        signer = signer or self.signer(data)
        path = self.path(connection_id)
        throttled = transient = 0
        while True:
            time_left = None if deadline is None else deadline - time.monotonic()
            if time_left is not None and time_left < MIN_POST_SECONDS:
                if throttled or transient:
                    return self._failed(connection_id, "deadline")
                return PostOutcome.UNSENT
            try:
                status = self._send(signer, path, data, time_left)
            except urllib3.exceptions.HTTPError as exc:
                status, reason = 0, type(exc).__name__
            else:
                reason = str(status)
            if status == 200:
                return PostOutcome.DELIVERED
            if status == 410:
                return PostOutcome.GONE
            if status == 413:
                logger.warning(
                    "post refused as too large", extra={"connection_id": connection_id, "bytes": len(data)}
                )
                return PostOutcome.TOO_LARGE
            if status == 429:
                throttled += 1
                if throttled >= self._retry.throttle_attempts:
                    return self._failed(connection_id, reason)
                self._pause(self._retry.delay(throttled), deadline)
                continue
            if status == 0 or status >= 500:
                transient += 1
                if transient >= self._retry.transient_attempts:
                    return self._failed(connection_id, reason)
                self._pause(self._retry.delay(transient), deadline)
                continue
            return self._failed(connection_id, reason)

    def _pause(self, seconds: float, deadline: float | None) -> None:
        if deadline is not None:
            seconds = min(seconds, max(0.0, deadline - time.monotonic()))
        self._sleep(seconds)

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

    def post(self, connection_id: str, data: bytes, *, deadline: float | None = None) -> PostOutcome:
        return self.api.post(connection_id, data, deadline=deadline)

    def fan_out(
        self,
        connection_ids: Iterable[str],
        data: bytes,
        *,
        on_gone: Callable[[str], None] | None = None,
        deadline: float | None = None,
    ) -> FanOutResult:
        """Post ``data`` to every id, at most ``workers`` at once.

        ``on_gone`` runs (in the posting thread) for each connection that
        answered 410, so stale items are removed while delivery goes on.
        """
        started = time.perf_counter()
        signer = self.api.signer(data)
        result = FanOutResult()

        def one(connection_id: str) -> tuple[str, PostOutcome]:
            outcome = self.api.post(connection_id, data, signer, deadline=deadline)
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
            elif outcome is PostOutcome.UNSENT:
                result.unsent.append(connection_id)
            else:
                result.failed.append(connection_id)
        result.duration_ms = round((time.perf_counter() - started) * 1000, 1)
        return result


def new_pool(
    workers: int, *, connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT
) -> urllib3.PoolManager:
    """One keep-alive pool per container, as wide as the fan-out."""
    return urllib3.PoolManager(
        num_pools=8,
        maxsize=max(workers, 1),
        block=False,
        timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        retries=False,
    )
