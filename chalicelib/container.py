"""Lazy, once-per-container construction of the proxy's dependencies.

Nothing here runs at import: ``chalice package`` and test imports need no
environment. Each dependency is built on first use and cached for the life of
the Lambda container (one DynamoDB client, one Lambda client, one HTTP
session, one Management API pool and thread pool). Endpoints come from the
environment through boto3's own variables (``AWS_ENDPOINT_URL_DYNAMODB``,
``AWS_ENDPOINT_URL_LAMBDA``), so nothing here knows whether it runs locally.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.session
from botocore.config import Config

from chalicelib.backend import BackendClient
from chalicelib.config import Settings
from chalicelib.connect import ConnectCase, DisconnectCase
from chalicelib.deadline import Deadline
from chalicelib.deliver import DELIVER_RETRY_SECONDS, DeliverCase
from chalicelib.fanout import HANDSHAKE_GRACE_SECONDS, FanOut
from chalicelib.fanout_chunk import FanOutChunkCase
from chalicelib.gateway import ConnectionGateway, ManagementApi, RetryPolicy
from chalicelib.message import MessageCase
from chalicelib.model import Backend, GatewayFor, Invoker, Metric, Registry
from chalicelib.push import PushCase
from chalicelib.redaction import redact_library_logs
from chalicelib.registry import DEFAULT_LOOKUP_RETRY_DELAYS, ConnectionRegistry
from chalicelib.signing import region_for
from chalicelib.transport import Transport

logger = logging.getLogger(__name__)

#: Management API endpoints kept per container. One is the norm (this API's stage);
#: the bound keeps a container's memory fixed whatever its events name.
GATEWAY_CACHE_SIZE = 4
_MISCONFIGURED = {"error": {"code": "misconfigured", "message": "the proxy is misconfigured"}}


def _function_name(context: Any) -> str | None:
    name = getattr(context, "function_name", None)
    return name if isinstance(name, str) else None


class LambdaInvoker:
    """Asynchronous invocations (``InvocationType=Event``) of this app's functions."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def invoke_async(self, function_name: str, payload: Mapping[str, Any]) -> None:
        response = self._client.invoke(
            FunctionName=function_name,
            InvocationType="Event",
            Payload=json.dumps(payload, separators=(",", ":")).encode("utf-8"),
        )
        status = response.get("StatusCode")
        if status != 202:
            raise RuntimeError(f"asynchronous invoke answered {status}")


def aws_config(workers: int, attempts: int, *, retry_mode: str = "standard") -> Config:
    """Client settings: short timeouts, bounded retries, a pool as wide as the fan-out.

    DynamoDB uses botocore's ``legacy`` mode, which applies DynamoDB's own backoff
    (50, 100, 200, 400 ms): ``standard`` mode waits up to 1, 2, 4 s between attempts,
    which would hold a chat message for seconds during a short throttling burst.
    """
    return Config(
        connect_timeout=2,
        read_timeout=5,
        retries={"mode": retry_mode, "total_max_attempts": attempts},
        max_pool_connections=max(10, workers),
    )


@dataclass(frozen=True)
class Tuning:
    """Timings that are not configuration: fixed in Lambda, shortened by tests."""

    deliver_retry_seconds: float = DELIVER_RETRY_SECONDS
    lookup_retry_delays: tuple[float, ...] = DEFAULT_LOOKUP_RETRY_DELAYS
    handshake_grace_seconds: float = HANDSHAKE_GRACE_SECONDS
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    #: The Management API's retries (attempts and backoff) for 429, 5xx and network errors.
    gateway_retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class UseCases:
    """Every use case, wired to one set of dependencies (one per container)."""

    settings: Settings
    registry: Registry
    backend: Backend
    invoker: Invoker
    gateway_for: GatewayFor
    connect: ConnectCase
    message: MessageCase
    disconnect: DisconnectCase
    deliver: DeliverCase
    push: PushCase
    fanout: FanOutChunkCase


class GatewayCache:
    """One ``ConnectionGateway`` per Management API endpoint, the least recently used evicted."""

    def __init__(self, build: Callable[[str], ConnectionGateway], size: int = GATEWAY_CACHE_SIZE) -> None:
        self._build = build
        self._size = size
        self._gateways: OrderedDict[str, ConnectionGateway] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, endpoint: str) -> ConnectionGateway:
        with self._lock:
            gateway = self._gateways.get(endpoint)
            if gateway is None:
                gateway = self._build(endpoint)
                self._gateways[endpoint] = gateway
                while len(self._gateways) > self._size:
                    self._gateways.popitem(last=False)
            self._gateways.move_to_end(endpoint)
            return gateway

    def __len__(self) -> int:
        return len(self._gateways)


class Container:
    """The per-container cache of use cases; ``reset()`` drops them (tests).

    Each method runs one function's use case. When the use cases cannot even be
    built (bad configuration), the function still answers, as the route expects.
    """

    def __init__(self, metric: Metric = lambda name, value: None, tuning: Tuning = Tuning()) -> None:
        redact_library_logs()  # before any AWS client exists: no token in any log, at any level
        self._lock = threading.Lock()
        self._metric = metric
        self._tuning = tuning
        self._invoker: Invoker | None = None
        self._cases: UseCases | None = None

    def reset(self, tuning: Tuning | None = None, *, invoker: Invoker | None = None) -> None:
        """Drop the use cases (rebuilt on next use), with other timings or invoker if given."""
        with self._lock:
            self._cases = None
            if tuning is not None:
                self._tuning = tuning
            self._invoker = invoker

    def use_cases(self) -> UseCases:
        cases = self._cases
        if cases is None:
            with self._lock:
                if self._cases is None:
                    self._cases = self._build()
                cases = self._cases
        return cases

    def _built(self, route: str) -> UseCases | None:
        try:
            return self.use_cases()
        except Exception as exc:  # noqa: BLE001 - settings, credentials: answered as misconfigured
            logger.error("the proxy could not be built", extra={"route": route, "error": str(exc)})
            return None

    def connect(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        cases = self._built("$connect")
        if cases is None:
            return {"statusCode": 500, "body": "the proxy is misconfigured"}
        return cases.connect.handle(event, Deadline.from_context(context))

    def message(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        cases = self._built("$default")
        if cases is None:
            return {"statusCode": 500}
        return cases.message.handle(event, Deadline.from_context(context), _function_name(context))

    def disconnect(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        cases = self._built("$disconnect")
        return {"statusCode": 200} if cases is None else cases.disconnect.handle(event)

    def deliver(self, event: Any, context: Any = None) -> dict[str, Any]:
        cases = self._built("deliver")
        return (
            _MISCONFIGURED if cases is None else cases.deliver.handle(event, Deadline.from_context(context))
        )

    def push(self, event: Any, context: Any = None) -> dict[str, Any]:
        cases = self._built("push")
        if cases is None:
            return _MISCONFIGURED
        return cases.push.handle(event, Deadline.from_context(context), _function_name(context))

    def fanout(self, event: Any, context: Any = None) -> dict[str, Any]:
        cases = self._built("fanout")
        if cases is None:
            return _MISCONFIGURED
        return cases.fanout.handle(event, Deadline.from_context(context), _function_name(context))

    def _build(self) -> UseCases:
        settings = Settings.from_env()
        dynamodb = boto3.client(
            "dynamodb",
            config=aws_config(settings.fanout_workers, settings.aws_max_attempts, retry_mode="legacy"),
        )
        registry = ConnectionRegistry(
            dynamodb,
            settings.connections_table,
            clock=self._tuning.clock,
            sleep=self._tuning.sleep,
            lookup_retry_delays=self._tuning.lookup_retry_delays,
        )
        transport = Transport(settings.fanout_workers, max_body=settings.max_response_bytes)
        backend = BackendClient(settings.backend_url, settings.backend_timeout_seconds, transport)
        invoker = self._invoker or LambdaInvoker(
            boto3.client("lambda", config=aws_config(settings.fanout_workers, settings.aws_max_attempts))
        )
        executor = ThreadPoolExecutor(max_workers=settings.fanout_workers, thread_name_prefix="fanout")
        credentials = botocore.session.get_session().get_credentials()

        def frozen() -> Any:
            if credentials is None:
                raise RuntimeError("no AWS credentials to sign Management API calls")
            return credentials.get_frozen_credentials()

        def build_gateway(endpoint: str) -> ConnectionGateway:
            api = ManagementApi(
                endpoint,
                transport=transport,
                credentials=frozen,
                region=region_for(endpoint),
                retry=self._tuning.gateway_retry,
            )
            return ConnectionGateway(api, executor, settings.fanout_workers)

        return wire(
            settings,
            registry,
            backend,
            invoker,
            GatewayCache(build_gateway),
            metric=self._metric,
            tuning=self._tuning,
        )


def wire(
    settings: Settings,
    registry: Registry,
    backend: Backend,
    invoker: Invoker,
    gateway_for: GatewayFor,
    *,
    metric: Metric,
    tuning: Tuning = Tuning(),
) -> UseCases:
    """The use cases on these dependencies (the container's, or a test's fakes)."""
    fan_out = FanOut(
        registry,
        invoker,
        chunk_size=settings.push_chunk_size,
        chunk_function=settings.fanout_function_name,
        metric=metric,
        clock=tuning.clock,
        handshake_grace=tuning.handshake_grace_seconds,
    )
    return UseCases(
        settings=settings,
        registry=registry,
        backend=backend,
        invoker=invoker,
        gateway_for=gateway_for,
        connect=ConnectCase(settings, registry, backend, invoker, clock=tuning.clock, metric=metric),
        message=MessageCase(settings, registry, backend, gateway_for, fan_out, metric=metric),
        disconnect=DisconnectCase(registry, metric=metric),
        deliver=DeliverCase(
            settings,
            registry,
            gateway_for,
            sleep=tuning.sleep,
            retry_seconds=tuning.deliver_retry_seconds,
            metric=metric,
        ),
        push=PushCase(settings, registry, gateway_for, fan_out),
        fanout=FanOutChunkCase(settings, registry, fan_out, gateway_for),
    )
