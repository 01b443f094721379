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
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import botocore.session
from botocore.config import Config

from chalicelib.backend import BackendClient, new_session
from chalicelib.config import Settings
from chalicelib.gateway import ConnectionGateway, ManagementApi, new_pool, region_for
from chalicelib.proxy import Proxy
from chalicelib.registry import ConnectionRegistry

logger = logging.getLogger(__name__)

#: What each function answers when the proxy cannot even be built (bad configuration).
_UNBUILT: dict[str, dict[str, Any]] = {
    "connect": {"statusCode": 500, "body": "the proxy is misconfigured"},
    "message": {"statusCode": 500},
    "disconnect": {"statusCode": 200},
    "deliver": {"error": {"code": "misconfigured", "message": "the proxy is misconfigured"}},
    "push": {"error": {"code": "misconfigured", "message": "the proxy is misconfigured"}},
}


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


def aws_config(workers: int, *, retry_mode: str = "standard") -> Config:
    """Client settings: short timeouts, bounded retries, a pool as wide as the fan-out.

    DynamoDB uses botocore's ``legacy`` mode, which applies DynamoDB's own backoff
    (50, 100, 200, 400 ms): ``standard`` mode waits up to 1, 2, 4 s between attempts,
    which would hold a chat message for seconds during a short throttling burst.
    """
    return Config(
        connect_timeout=2,
        read_timeout=5,
        retries={"mode": retry_mode, "total_max_attempts": 5},
        max_pool_connections=max(10, workers),
    )


class Container:
    """The per-container cache of dependencies; ``reset()`` drops them (tests)."""

    def __init__(self, metric: Callable[[str, float], None] = lambda name, value: None) -> None:
        self._lock = threading.Lock()
        self._metric = metric
        self._proxy: Proxy | None = None
        self._gateways: dict[str, ConnectionGateway] = {}

    def reset(self) -> None:
        with self._lock:
            self._proxy = None
            self._gateways = {}

    def proxy(self) -> Proxy:
        proxy = self._proxy
        if proxy is None:
            with self._lock:
                if self._proxy is None:
                    self._proxy = self._build()
                proxy = self._proxy
        return proxy

    def run(self, use_case: str, event: Any, *args: Any) -> dict[str, Any]:
        """Run one of the proxy's use cases; a proxy that cannot be built still answers."""
        try:
            proxy = self.proxy()
        except Exception as exc:
            logger.error("the proxy could not be built", extra={"route": use_case, "error": str(exc)})
            return dict(_UNBUILT[use_case])
        result: dict[str, Any] = getattr(proxy, use_case)(event, *args)
        return result

    def _build(self) -> Proxy:
        settings = Settings.from_env()
        dynamodb = boto3.client("dynamodb", config=aws_config(settings.fanout_workers, retry_mode="legacy"))
        registry = ConnectionRegistry(dynamodb, settings.connections_table)
        backend = BackendClient(settings.backend_url, new_session(), settings.backend_timeout_seconds)
        invoker = LambdaInvoker(boto3.client("lambda", config=aws_config(settings.fanout_workers)))
        pool = new_pool(settings.fanout_workers)
        executor = ThreadPoolExecutor(max_workers=settings.fanout_workers, thread_name_prefix="fanout")
        credentials = botocore.session.get_session().get_credentials()

        def frozen() -> Any:
            if credentials is None:
                raise RuntimeError("no AWS credentials to sign Management API calls")
            return credentials.get_frozen_credentials()

        def gateway_for(endpoint: str) -> ConnectionGateway:
            gateway = self._gateways.get(endpoint)
            if gateway is None:
                api = ManagementApi(endpoint, pool=pool, credentials=frozen, region=region_for(endpoint))
                gateway = ConnectionGateway(api, executor, settings.fanout_workers)
                self._gateways[endpoint] = gateway
            return gateway

        return Proxy(settings, registry, backend, gateway_for, invoker, metric=self._metric)
