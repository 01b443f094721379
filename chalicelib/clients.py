"""What every handler uses: the settings and the clients, in one small dataclass (``Clients``).

``app.py`` builds them once per Lambda container on first use (a lazy
getter, as the Chalice samples' ``get_app_db()``): nothing runs at import, so
``chalice package`` and test imports need no environment. Endpoints come from
boto3's own variables (``AWS_ENDPOINT_URL_DYNAMODB``, ``AWS_ENDPOINT_URL_LAMBDA``),
so nothing here knows whether it runs locally. Tests build a ``Clients`` of
fakes with the constructor.

DynamoDB and Lambda are reached through the thin clients of ``chalicelib.aws``
over the same transport as everything else: no boto3 is imported on the way to
a handler's answer (``bench/RESULTS.md``, Cold start).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from chalicelib import aws
from chalicelib.backend import BackendClient
from chalicelib.config import Settings
from chalicelib.gateway import ConnectionGateway, RetryPolicy
from chalicelib.model import Backend, Gateway, GatewayFor, Invoker, Metric, Registry
from chalicelib.redaction import redact_library_logs
from chalicelib.registry import ConnectionRegistry
from chalicelib.signing import region_for
from chalicelib.transport import Transport

logger = logging.getLogger(__name__)

#: Management API endpoints kept per container. One is the norm (this API's stage);
#: the bound keeps a container's memory fixed whatever its events name.
GATEWAY_CACHE_SIZE = 4


def no_metric(name: str, value: float) -> None:
    """A metric sink that drops everything."""


@dataclass(frozen=True)
class Clients:
    """What every use case is built on: the real ones from ``build_clients``, fakes in tests."""

    settings: Settings
    registry: Registry
    backend: Backend
    invoker: Invoker
    #: The gateway for a Management API endpoint.
    gateway_for: GatewayFor
    metric: Metric = no_metric
    #: Wall-clock seconds (item ages) and pauses (deliver's waits for a handshake).
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    #: Closes the transport's loops and the fan-out threads (scripts and tests; Lambda never calls it).
    close: Callable[[], None] = lambda: None


def build_clients(metric: Metric = no_metric, settings: Settings | None = None) -> Clients:
    """The real clients: DynamoDB, Lambda, the backend and the Management API over one transport."""
    redact_library_logs()  # before any AWS client exists: no token in any log, at any level
    settings = settings or Settings.from_env()
    workers, attempts = settings.fanout_workers, settings.aws_max_attempts
    transport = Transport(workers, max_body=settings.max_response_bytes)
    credentials = aws.credentials_source()
    region = aws.region()
    # DynamoDB's own short backoff (botocore's legacy mode for it: 50, 100, 200, 400 ms), not
    # standard mode's pauses of up to 1, 2, 4 s, which would hold a chat message for seconds.
    dynamodb = aws.DynamoDB(
        aws.endpoint("dynamodb", region), region, credentials, transport, max_attempts=attempts
    )
    registry = ConnectionRegistry(
        dynamodb, settings.connections_table, lookup_retry_delays=settings.lookup_retry_delays
    )
    invoker = aws.LambdaClient(
        aws.endpoint("lambda", region), region, credentials, transport, max_attempts=attempts
    )
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fanout")
    retry = RetryPolicy(base_delay=settings.post_retry_base_seconds)

    @functools.lru_cache(maxsize=GATEWAY_CACHE_SIZE)
    def gateway_for(endpoint: str) -> Gateway:
        return ConnectionGateway(
            endpoint, region_for(endpoint), credentials, transport, executor=executor, retry=retry
        )

    backend = BackendClient(settings.backend_url, settings.backend_timeout_seconds, transport)

    def close() -> None:
        transport.close()
        executor.shutdown()

    return Clients(settings, registry, backend, invoker, gateway_for, metric, close=close)


def answer_with(
    get_clients: Callable[[], Clients],
    route: str,
    misconfigured: dict[str, Any],
    run: Callable[[Clients], dict[str, Any]],
) -> dict[str, Any]:
    """``run`` on the container's clients; when they cannot be built (bad settings), ``misconfigured``."""
    try:
        clients = get_clients()
    except Exception as exc:  # noqa: BLE001 - settings, credentials: answered as misconfigured
        logger.error("the proxy could not be built", extra={"route": route, "error": str(exc)})
        return misconfigured
    return run(clients)


def function_name(context: Any) -> str | None:
    """The running function's name (its siblings' names are derived from it)."""
    name = getattr(context, "function_name", None)
    return name if isinstance(name, str) else None
