"""The interfaces the use cases depend on, so tests can hand fakes in without subclassing.

The real implementations are ``registry.ConnectionRegistry``, ``backend.BackendClient``,
``gateway.ConnectionGateway`` and ``container.LambdaInvoker``; ``tests/fakes.py``
holds in-memory ones with the same shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from chalicelib.deadline import Deadline
from chalicelib.gateway import FanOutResult, PostOutcome
from chalicelib.registry import Connection


class Registry(Protocol):
    """The live connections (the DynamoDB connections table)."""

    def put(self, conn: Connection) -> None: ...

    def delete(self, channel: str, connection_id: str, *, created_before: int | None = None) -> bool: ...

    def find(self, connection_id: str, *, retry: bool = True, cached: bool = True) -> Connection | None: ...

    def channel_ids(self, channel: str, connection_type: str | None) -> Iterator[str]: ...

    def get(self, channel: str, connection_id: str) -> Connection | None: ...

    def endpoints(self, channel: str, connection_ids: Sequence[str]) -> dict[str, str | None]: ...

    def update_token(self, conn: Connection, token: str) -> Connection: ...


class Backend(Protocol):
    """The chat backend's HTTP API: the 200 answer as a dict, or a ``ProxyError``."""

    def post(
        self, path: str, body: dict[str, Any], *, deadline: Deadline | None = None
    ) -> dict[str, Any]: ...


class Gateway(Protocol):
    """Posting to the WebSocket connections of one API stage."""

    @property
    def endpoint(self) -> str: ...

    def post(self, connection_id: str, data: bytes, *, deadline: float | None = None) -> PostOutcome: ...

    def fan_out(
        self,
        connection_ids: Iterable[str],
        data: bytes,
        *,
        on_gone: Callable[[str], None] | None = None,
        deadline: float | None = None,
    ) -> FanOutResult: ...


class Invoker(Protocol):
    """Asynchronous invocations of this app's own functions."""

    def invoke_async(self, function_name: str, payload: Mapping[str, Any]) -> None:
        """Start ``function_name`` with ``payload`` (InvocationType=Event)."""


#: The gateway for a Management API endpoint (cached per container).
GatewayFor = Callable[[str], Gateway]
#: A CloudWatch metric: name and count.
Metric = Callable[[str, float], None]
