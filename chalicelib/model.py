"""The proxy's model, on the ground floor: the value types and the interfaces the use cases use.

Value types: a live ``Connection`` (its item's attributes), a post's ``PostOutcome``
and the ``FanOutResult`` of many posts. Interfaces (``typing.Protocol``, so tests hand
fakes in without subclassing): ``Registry`` (implemented by
``registry.ConnectionRegistry``), ``Backend`` (``backend.BackendClient``), ``Gateway``
(``gateway.ConnectionGateway``) and ``Invoker`` (``aws.LambdaClient``), gathered
in ``clients.Clients``; ``tests/fakes.py`` holds in-memory ones.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from chalicelib.deadline import Deadline


@dataclass(frozen=True)
class Connection:
    connection_id: str
    channel: str
    connection_type: str
    user_id: str | None = None
    token: str | None = field(default=None, repr=False)  # never shown, even in a traceback or log
    created_at: int = 0
    ttl: int = 0
    booking_id: str | None = None
    endpoint: str | None = None
    #: A subscription item: the channel key of the socket's own (home) item; None for the home item.
    home: str | None = None
    #: The connection types this item is in its channel as (subscriptions, and a home item
    #: subscribed as a second type); empty: ``connection_type`` alone.
    types: frozenset[str] = frozenset()

    @property
    def subscription(self) -> bool:
        """An item a ``subscribe`` wrote: the socket's own item (with its token) is elsewhere."""
        return self.home is not None

    @property
    def in_types(self) -> frozenset[str]:
        """The connection types this item is in its channel as: its ``types``, else (an own item)
        its ``connection_type``; a subscription item without types (its last one just left) none."""
        return self.types if self.types or self.subscription else frozenset({self.connection_type})


class Member(NamedTuple):
    """A live connection of a channel, as a channel read answers it."""

    connection_id: str
    user_id: str | None
    #: The Management API endpoint stored with it (``$connect``'s), if any.
    endpoint: str | None = None


class PostOutcome(enum.Enum):
    DELIVERED = "delivered"
    GONE = "gone"
    TOO_LARGE = "too_large"
    FAILED = "failed"
    #: Only with a deadline: not attempted, because it could not finish in time.
    UNSENT = "unsent"


@dataclass
class FanOutResult:
    delivered: int = 0
    gone: list[str] = field(default_factory=list)
    too_large: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    duration_ms: float = 0.0
    #: Ids never attempted because the deadline came first (not in ``attempted``).
    unsent: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return self.delivered + len(self.gone) + len(self.too_large) + len(self.failed)

    def add(self, connection_id: str, outcome: PostOutcome) -> None:
        """Count one post's outcome."""
        if outcome is PostOutcome.DELIVERED:
            self.delivered += 1
        else:  # each other outcome's value names its list
            getattr(self, outcome.value).append(connection_id)

    def merge(self, other: FanOutResult) -> None:
        self.delivered += other.delivered
        self.gone += other.gone
        self.too_large += other.too_large
        self.failed += other.failed
        self.unsent += other.unsent


class Registry(Protocol):
    """The live connections (the DynamoDB connections table), as the handlers call them.

    Each call is bounded by ``deadline`` when one is given: past it, ``BackendUnavailable``.
    """

    def put(self, conn: Connection, *, deadline: Deadline | None = None) -> None: ...

    def delete(
        self,
        channel: str,
        connection_id: str,
        *,
        created_before: int | None = None,
        deadline: Deadline | None = None,
    ) -> bool: ...

    def find(
        self, connection_id: str, *, token: bool = True, deadline: Deadline | None = None
    ) -> Connection | None: ...

    def channel_ids(
        self, channel: str, connection_type: str | None, *, deadline: Deadline | None = None
    ) -> Iterator[str]: ...

    def count(self, channel: str, limit: int, *, deadline: Deadline | None = None) -> int: ...

    def get(
        self, channel: str, connection_id: str, *, deadline: Deadline | None = None
    ) -> Connection | None: ...

    def endpoints(
        self, channel: str, connection_ids: Sequence[str], *, deadline: Deadline | None = None
    ) -> dict[str, str | None]: ...

    def update_token(
        self, conn: Connection, token: str, *, deadline: Deadline | None = None
    ) -> Connection: ...

    def connection_items(
        self, connection_id: str, *, deadline: Deadline | None = None
    ) -> list[Connection]: ...

    def channel_members(
        self, channel: str, connection_type: str | None, *, deadline: Deadline | None = None
    ) -> list[Member]: ...

    def subscribe(self, item: Connection, *, deadline: Deadline | None = None) -> None: ...

    def unsubscribe(
        self, channel: str, connection_id: str, connection_type: str, *, deadline: Deadline | None = None
    ) -> bool: ...

    def remove_connection(
        self, connection_id: str, *, deadline: Deadline | None = None
    ) -> list[Connection]: ...


class Backend(Protocol):
    """The chat backend's HTTP API: the 200 answer as a dict, or a ``ProxyError``."""

    def post(
        self, path: str, body: dict[str, Any], *, deadline: Deadline | None = None
    ) -> dict[str, Any]: ...


class Gateway(Protocol):
    """Posting to the WebSocket connections of one API stage."""

    def post(self, connection_id: str, data: bytes, *, deadline: Deadline | None = None) -> PostOutcome: ...

    def post_many(
        self,
        connection_ids: Iterable[str],
        data: bytes,
        *,
        on_gone: Callable[[str], None] | None = None,
        deadline: Deadline | None = None,
    ) -> FanOutResult: ...


class Invoker(Protocol):
    """Asynchronous invocations of this app's own functions."""

    def invoke_async(
        self, function_name: str, payload: Mapping[str, Any], deadline: Deadline | None = None
    ) -> None:
        """Start ``function_name`` with ``payload`` (InvocationType=Event), within ``deadline``."""


#: The gateway for a Management API endpoint (cached per container).
GatewayFor = Callable[[str], Gateway]
#: A CloudWatch metric: name and count.
Metric = Callable[[str, float], None]
