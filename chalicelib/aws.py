"""Thin AWS clients on the proxy's own transport and signer: DynamoDB and Lambda's Invoke.

botocore spends about 1 ms of CPU per DynamoDB call and over 100 ms importing and
building its clients on a cold container (``bench/RESULTS.md``); these clients make
exactly the calls the proxy makes, with botocore's names and shapes, over
``chalicelib.transport`` and ``chalicelib.signing``. ``tests/unit/test_aws.py``
holds them to botocore: the same request bytes and signature for each operation,
the same parsed answers from moto.

- ``DynamoDB``: the JSON 1.0 protocol (``POST /``, ``X-Amz-Target:
  DynamoDB_20120810.<Operation>``): ``call`` makes one operation (``PutItem``,
  ``Query``...) with botocore's parameters and answers its dict (without
  ``ResponseMetadata``). Throttling (``ProvisionedThroughputExceededException``,
  ``ThrottlingException``, ``RequestLimitExceeded``...), 5xx and broken connections
  are retried with DynamoDB's own backoff (botocore's ``legacy`` mode: 50, 100, 200,
  400 ms...), at most ``max_attempts`` attempts (``AWS_MAX_ATTEMPTS``; one unless
  given); any other error answer raises ``AwsError`` with DynamoDB's code
  (``ConditionalCheckFailedException``...).
- ``LambdaClient``: ``invoke_async``, the asynchronous invocations (``POST
  /2015-03-31/functions/{name}/invocations``, ``InvocationType=Event``) of the app's own
  functions, retried like botocore's ``standard`` mode (throttling and 5xx, jittered backoff).

**Deadlines.** Every call takes ``deadline``: no attempt starts with less than
``MIN_ATTEMPT_SECONDS`` left, each attempt's whole time (connect, send, answer) is
the smaller of ``ATTEMPT_SECONDS`` and the time left, and a backoff that would
outlast the deadline is not waited for: the call fails with the last error. Without
a deadline an attempt takes at most ``ATTEMPT_SECONDS`` (botocore's 5 s read timeout).

**Credentials** come from the environment Lambda sets (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``); elsewhere (a profile, instance
metadata) from botocore's chain, imported only then. **Endpoints**:
``AWS_ENDPOINT_URL_DYNAMODB`` / ``AWS_ENDPOINT_URL_LAMBDA``, else
``AWS_ENDPOINT_URL``, else the region's (``AWS_REGION``, else ``AWS_DEFAULT_REGION``).
Nothing is logged but operation names and error codes: requests carry tokens.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from chalicelib.deadline import Deadline
from chalicelib.response_parser import HttpError, Response
from chalicelib.signing import Credentials, amz_now, sign_request
from chalicelib.transport import Transport, address

#: An attempt starts only with this much time left before the caller's deadline.
MIN_ATTEMPT_SECONDS = 0.05
#: One attempt's whole time without a deadline (botocore's read timeout here).
ATTEMPT_SECONDS = 5.0
#: Error codes retried as throttling (botocore's retry rules, ``_retry.json``).
THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
    }
)
DYNAMODB_TARGET = "DynamoDB_20120810"
DYNAMODB_CONTENT_TYPE = "application/x-amz-json-1.0"
LAMBDA_INVOKE_PATH = "/2015-03-31/functions/{FunctionName}/invocations"


class AwsError(Exception):
    """An AWS call that failed: its error ``code`` (``ConditionalCheckFailedException``,
    ``HttpTimeout``...), the HTTP ``status`` (0 when no answer came) and AWS's message."""

    def __init__(self, code: str, message: str = "", status: int = 0) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status in (0, 429) or self.status >= 500 or self.code in THROTTLING


def region(env: Mapping[str, str] = os.environ) -> str:
    """Lambda's region (``AWS_REGION``), else ``AWS_DEFAULT_REGION``, else botocore's configuration."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if env.get(name):
            return env[name]
    import botocore.session  # a profile's region: only where the environment names none

    configured = botocore.session.get_session().get_config_variable("region")
    if not configured:
        raise ValueError("no AWS region: set AWS_DEFAULT_REGION")
    return str(configured)


def endpoint(service: str, region_name: str, env: Mapping[str, str] = os.environ) -> str:
    """The service's endpoint: ``AWS_ENDPOINT_URL_<SERVICE>``, ``AWS_ENDPOINT_URL``, else the region's."""
    configured = env.get(f"AWS_ENDPOINT_URL_{service.upper()}") or env.get("AWS_ENDPOINT_URL")
    if configured:
        return configured
    suffix = "amazonaws.com.cn" if region_name.startswith("cn-") else "amazonaws.com"
    return f"https://{service}.{region_name}.{suffix}"


def credentials_source(env: Mapping[str, str] = os.environ) -> Callable[[], Credentials]:
    """The credentials to sign with: the environment's, else botocore's chain (imported only then)."""
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        fixed = Credentials(key, secret, env.get("AWS_SESSION_TOKEN") or None)
        return lambda: fixed
    import botocore.session

    found = botocore.session.get_session().get_credentials()

    def refreshed() -> Credentials:
        if found is None:
            raise RuntimeError("no AWS credentials to sign AWS calls")
        frozen = found.get_frozen_credentials()  # refreshed by botocore when they near expiry
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    return refreshed


class _Service:
    """One AWS service endpoint: signed requests over the transport, retried within a deadline."""

    #: The service's signing name.
    name = ""

    def __init__(
        self,
        url: str,
        region_name: str,
        credentials: Callable[[], Credentials],
        transport: Transport,
        *,
        max_attempts: int = 1,
        sleep: Callable[[float], None] = time.sleep,
        amz_date: Callable[[], str] = amz_now,
    ) -> None:
        self._origin, self._base_path, self._host = address(url)
        self._region = region_name
        self._credentials = credentials
        self._transport = transport
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._amz_date = amz_date

    def backoff(self, attempt: int) -> float:
        """botocore's ``standard`` pause before retry ``attempt`` (1-based): full jitter, at most 20 s."""
        return random.uniform(0, min(20.0, 2.0 ** (attempt - 1)))  # noqa: S311 - jitter

    def request(self, path: str, headers: dict[str, str], body: bytes, amz_date: str) -> bytes:
        """The whole request as sent: head (signed) and body."""
        full = self._base_path + path
        signed = sign_request(
            self._credentials(), self.name, self._region, self._host, full, headers, body, amz_date
        )
        lines = "".join(f"{name}: {value}\r\n" for name, value in signed.items())
        head = (
            f"POST {full} HTTP/1.1\r\nHost: {self._host}\r\n{lines}"
            f"User-Agent: ws-proxy\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    def send(self, path: str, headers: dict[str, str], body: bytes, deadline: Deadline | None) -> Response:
        """The first answer under 300 (or the last error), retrying what AWS says may be retried."""
        attempt = 0
        while True:
            attempt += 1
            left = ATTEMPT_SECONDS if deadline is None else deadline.remaining()
            if left < MIN_ATTEMPT_SECONDS:
                raise AwsError("DeadlineExceeded", "no time left for the call")
            request = self.request(path, headers, body, self._amz_date())
            try:
                response = self._transport.post(self._origin, request, min(ATTEMPT_SECONDS, left))
            except HttpError as exc:
                failure = AwsError(type(exc).__name__, str(exc))
            else:
                if response.status < 300:
                    return response
                failure = _json_error(response)
            if not failure.retryable or attempt >= self._max_attempts:
                raise failure
            pause = self.backoff(attempt)
            if deadline is not None and deadline.remaining() - pause < MIN_ATTEMPT_SECONDS:
                raise failure  # no time for another attempt after the pause
            self._sleep(pause)


def _json_error(response: Response) -> AwsError:
    """An AWS JSON error answer: ``{"__type": "...#Code", "message": "..."}``."""
    try:
        body = json.loads(response.body) if response.body else {}
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    kind = str(body.get("__type") or body.get("Type") or f"HTTP{response.status}")
    message = body.get("message") or body.get("Message") or ""
    return AwsError(kind.rsplit("#", 1)[-1], str(message), response.status)


class DynamoDB(_Service):
    """DynamoDB's low-level operations the registry uses, botocore's names and shapes."""

    name = "dynamodb"

    def backoff(self, attempt: int) -> float:
        """botocore's ``legacy`` pause for DynamoDB: 50 ms doubling."""
        return 0.05 * 2.0 ** (attempt - 1)

    def call(
        self, operation: str, params: dict[str, Any], deadline: Deadline | None = None
    ) -> dict[str, Any]:
        """One operation (``PutItem``...) with botocore's parameters; DynamoDB's answer."""
        headers = {"X-Amz-Target": f"{DYNAMODB_TARGET}.{operation}", "Content-Type": DYNAMODB_CONTENT_TYPE}
        body = json.dumps(params).encode()
        response = self.send("/", headers, body, deadline)
        try:
            answer = json.loads(response.body) if response.body else {}
        except ValueError:
            answer = None
        if not isinstance(answer, dict):  # not DynamoDB's JSON object: a failed call, not a crash
            raise AwsError("MalformedAnswer", "the answer is not a JSON object", response.status)
        return answer


class LambdaClient(_Service):
    """Lambda's asynchronous ``Invoke`` of the app's own functions, as botocore sends it."""

    name = "lambda"

    def invoke_async(
        self, function_name: str, payload: Mapping[str, Any], deadline: Deadline | None = None
    ) -> None:
        """Start ``function_name`` with ``payload`` (``InvocationType=Event``); it must answer 202."""
        path = LAMBDA_INVOKE_PATH.format(FunctionName=quote(function_name, safe="-_.~"))
        data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        status = self.send(path, {"X-Amz-Invocation-Type": "Event"}, data, deadline).status
        if status != 202:
            raise RuntimeError(f"asynchronous invoke answered {status}")
