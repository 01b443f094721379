"""A connection still in its handshake answers 410 like a closed one: on every attempt it keeps its item.

``fanout``'s later attempt may run at once, while the connection's handshake is still
under way: it waits the grace out before its last post, and when it has no time to
wait, the item stays. Fakes on a clock the waits move.
"""

from __future__ import annotations

from typing import Any

from chalicelib.clients import Clients
from chalicelib.config import Settings
from chalicelib.deadline import Deadline
from chalicelib.fanout import FanOutChunkCase
from chalicelib.internal_events import FanOutChunk
from chalicelib.model import Connection
from tests.fakes import FakeBackend, FakeGateway, FakeInvoker, FakeRegistry

CREATED = 1_800_000_000
ENDPOINT = "https://example.execute-api.us-east-1.amazonaws.com/development"
FRAME = b'{"type":"message"}'
GRACE = 5.0


class World:
    """The use cases' clients on fakes; ``sleep`` moves the clock and may complete handshakes."""

    def __init__(self) -> None:
        self.now = float(CREATED)
        self.registry = FakeRegistry(clock=lambda: self.now)
        self.gateway = FakeGateway(endpoint=ENDPOINT)
        self.invoker = FakeInvoker()
        self.sleeps: list[float] = []
        self.handshakes_completing: set[str] = set()
        self.metrics: list[tuple[str, float]] = []
        settings = Settings(
            backend_url="https://api.example.com",
            connections_table="t",
            api_gateway_endpoint=ENDPOINT,
            fanout_function_name="fanout-fn",
            handshake_grace_seconds=GRACE,
        )
        self.clients = Clients(
            settings,
            self.registry,
            FakeBackend(),
            self.invoker,
            lambda endpoint: self.gateway,
            metric=lambda name, value: self.metrics.append((name, value)),
            clock=lambda: self.now,
            sleep=self.sleep,
        )

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.gateway.open |= self.handshakes_completing

    def connect(self, cid: str) -> None:
        """A connection whose ``$connect`` has just returned: its handshake is under way."""
        self.registry.put(
            Connection(
                cid, "booking#1", "chat", token="t", created_at=CREATED, ttl=CREATED + 3600, booking_id="1"
            )
        )

    def later_attempt(self, cid: str, seconds_left: float) -> dict[str, Any]:
        """The last attempt for ``cid``, run at once (as an asynchronous invoke may)."""
        payload = FanOutChunk("booking#1", [cid], [FRAME], attempt=1).to_payload()
        return FanOutChunkCase(self.clients).handle(
            payload, Deadline.after(seconds_left), "ws-proxy-t-fanout"
        )


def test_the_last_attempt_waits_out_a_handshake_under_way_then_delivers() -> None:
    world = World()
    world.connect("NEW=")
    world.handshakes_completing.add("NEW=")
    result = world.later_attempt("NEW=", seconds_left=60)
    assert world.sleeps == [GRACE + 1]
    assert world.gateway.received["NEW="] == [FRAME]
    assert ("booking#1", "NEW=") in world.registry.items
    assert result == {"delivered": 1, "gone": 0, "failed": 0, "queued": 0}


def test_the_last_attempt_removes_a_connection_still_gone_once_the_grace_is_over() -> None:
    world = World()
    world.connect("LEFT=")  # and never opens
    result = world.later_attempt("LEFT=", seconds_left=60)
    assert world.sleeps == [GRACE + 1]
    assert world.registry.items == {}
    assert result == {"delivered": 0, "gone": 1, "failed": 0, "queued": 0}
    assert ("DeliveryFailures", 1) not in world.metrics


def test_without_time_to_wait_the_last_attempt_keeps_a_young_connections_item() -> None:
    world = World()
    world.connect("NEW=")
    result = world.later_attempt("NEW=", seconds_left=GRACE)
    assert world.sleeps == []
    assert ("booking#1", "NEW=") in world.registry.items  # its delivery_failed note did not remove it
    assert result == {"delivered": 0, "gone": 0, "failed": 1, "queued": 0}
    assert ("DeliveryFailures", 1) in world.metrics


def subscribed(world: World, cid: str) -> None:
    """A user-level socket just opened, subscribed at once to booking 1: two items."""
    world.registry.put(
        Connection(cid, "user#u", "chat", user_id="u", token="t", created_at=CREATED, ttl=CREATED + 3600)
    )
    world.registry.subscribe(
        Connection(
            cid,
            "booking#1",
            "chat",
            user_id="u",
            created_at=CREATED,
            ttl=CREATED + 3600,
            booking_id="1",
            home="user#u",
            types=frozenset({"chat"}),
        )
    )


def test_a_young_socket_keeps_every_item_its_subscriptions_too() -> None:
    world = World()
    subscribed(world, "NEW=")
    world.later_attempt("NEW=", seconds_left=GRACE)
    assert sorted(world.registry.items) == [("booking#1", "NEW="), ("user#u", "NEW=")]


def test_a_socket_still_gone_once_the_grace_is_over_loses_every_item() -> None:
    world = World()
    subscribed(world, "LEFT=")
    result = world.later_attempt("LEFT=", seconds_left=60)
    assert world.sleeps == [GRACE + 1]
    assert world.registry.items == {}
    assert result == {"delivered": 0, "gone": 1, "failed": 0, "queued": 0}
