"""The use cases on in-memory fakes: no network, no AWS."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent

from chalicelib import wire
from chalicelib.channel_sender import RESERVE_FOR_NOTES
from chalicelib.clients import Clients
from chalicelib.config import Settings
from chalicelib.connect import ConnectCase, DisconnectCase
from chalicelib.deadline import Deadline
from chalicelib.deliver import DeliverCase
from chalicelib.errors import BackendUnavailable
from chalicelib.fanout import FanOutChunkCase
from chalicelib.internal_events import pack_frames, unpack_frames
from chalicelib.message import MessageCase
from chalicelib.model import Connection, PostOutcome
from chalicelib.push import PushCase
from chalicelib.routes import DEFAULT_ROUTES
from tests.fakes import FakeBackend, FakeGateway, FakeInvoker, FakeRegistry
from ws_proxy_testing import events

NOW = 1_800_000_000
ENDPOINT = f"https://{events.DOMAIN}/{events.STAGE}"


def typed(event: dict[str, Any]) -> APIGatewayWebSocketEvent:
    return APIGatewayWebSocketEvent(event)


class Proxy:
    """Every use case on one set of clients."""

    def __init__(self, clients: Clients) -> None:
        self.settings = clients.settings
        self.connect = ConnectCase(clients)
        self.message = MessageCase(clients)
        self.disconnect = DisconnectCase(clients)
        self.deliver = DeliverCase(clients)
        self.push = PushCase(clients)
        self.fanout = FanOutChunkCase(clients)


def make(
    **settings: Any,
) -> tuple[Proxy, FakeRegistry, FakeBackend, dict[str, FakeGateway], FakeInvoker, list[float]]:
    registry = FakeRegistry(clock=lambda: NOW)
    backend = FakeBackend()
    gateways: dict[str, FakeGateway] = {}
    invoker = FakeInvoker()
    sleeps: list[float] = []

    def gateway_for(endpoint: str) -> FakeGateway:
        return gateways.setdefault(endpoint, FakeGateway(endpoint=endpoint))

    values: dict[str, Any] = {
        "backend_url": "https://api.example.com",
        "connections_table": "t",
        "deliver_function_name": "deliver-fn",
        "fanout_function_name": "fanout-fn",
        **settings,
    }
    config = Settings(**values)
    proxy = Proxy(
        Clients(config, registry, backend, invoker, gateway_for, clock=lambda: NOW, sleep=sleeps.append)
    )
    return proxy, registry, backend, gateways, invoker, sleeps


def long() -> Deadline:
    """Plenty of time: a minute from now."""
    return Deadline.after(60)


def add(registry: FakeRegistry, cid: str, booking: str = "1", ctype: str = "chat") -> None:
    route = DEFAULT_ROUTES[ctype]
    registry.put(
        Connection(
            cid,
            route.channel_for(booking, None),
            ctype,
            token="t",
            created_at=NOW - 60,  # past its handshake
            ttl=NOW + 60,
            booking_id=booking,
            endpoint=ENDPOINT,
        )
    )


def test_connect_stores_the_events_endpoint_and_schedules_delivery_without_it() -> None:
    proxy, registry, backend, _gateways, invoker, _ = make()
    backend.answers["/api/chat/ws/1/connect"] = {"initial": {"type": "history", "messages": []}}
    proxy.connect.handle(typed(events.connect_event("A=", {"booking_id": "1", "token": "t"})), long())
    ((_, payload),) = invoker.calls
    assert "endpoint" not in payload
    (conn,) = registry.items.values()
    assert conn.endpoint == ENDPOINT
    assert conn.booking_id == "1"
    assert conn.channel == "booking#1"


def test_endpoint_override_wins_for_custom_domains() -> None:
    proxy, *_ = make(api_gateway_endpoint="https://chat.example.com/v1")
    assert proxy.settings.endpoint_for("x", "y") == "https://chat.example.com/v1"


def test_deliver_waits_out_410_with_growing_pauses_and_keeps_order() -> None:
    proxy, registry, _, gateways, _, sleeps = make()
    add(registry, "A=")
    gateway = FakeGateway(endpoint=ENDPOINT, open={"A="})
    gateways[ENDPOINT] = gateway
    gateway.scripted["A="] = [PostOutcome.GONE] * 4
    frames = [wire.encode({"n": i}) for i in range(3)]
    result = proxy.deliver.handle(
        {"connection_id": "A=", "channel": "booking#1", "frames": pack_frames(frames)}, long()
    )
    assert result == {"delivered": 3, "frames": 3, "outcome": "delivered"}
    assert [json.loads(f) for f in gateway.received["A="]] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert sleeps == [0.05, 0.1, 0.2, 0.4]


class IndexBehind(FakeRegistry):
    """The connection_id index before it shows a new socket: its first read finds no item."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: NOW)
        self.reads = 0

    def remove_connection(self, connection_id: str, *, deadline: Deadline | None = None) -> list[Connection]:
        self.reads += 1
        return [] if self.reads == 1 else super().remove_connection(connection_id, deadline=deadline)


def disconnect_connected(registry: FakeRegistry, seconds_ago: float | None) -> dict[str, Any]:
    """``$disconnect`` of A= connected ``seconds_ago`` (None: an event without ``connectedAt``)."""
    settings = Settings(backend_url="https://api.example.com", connections_table="t")
    clients = Clients(
        settings, registry, FakeBackend(), FakeInvoker(), lambda _: FakeGateway(), clock=lambda: NOW
    )
    event = events.disconnect_event("A=")
    if seconds_ago is None:
        del event["requestContext"]["connectedAt"]
    else:
        event["requestContext"]["connectedAt"] = int((NOW - seconds_ago) * 1000)
    return DisconnectCase(clients).handle(typed(event), long())


@pytest.mark.parametrize("seconds_ago", [0.5, 59, None])
def test_a_disconnect_just_after_connect_asks_the_index_again(seconds_ago: float | None) -> None:
    registry = IndexBehind()
    add(registry, "A=")
    assert disconnect_connected(registry, seconds_ago) == {"statusCode": 200}
    assert registry.items == {}  # found on the second read
    assert registry.lookups == 1


def test_a_disconnect_of_a_socket_connected_long_ago_that_finds_nothing_does_not_wait() -> None:
    registry = FakeRegistry(clock=lambda: NOW)
    assert disconnect_connected(registry, 3600) == {"statusCode": 200}
    assert registry.lookups == 0  # no lookup with pauses: its items are gone, not lagging


def test_deliver_stops_waiting_once_the_connection_has_disconnected() -> None:
    proxy, registry, _, gateways, _, sleeps = make()
    add(registry, "A=")
    gateway = FakeGateway(endpoint=ENDPOINT)  # never opens: 410 for ever
    gateways[ENDPOINT] = gateway
    frames = [wire.encode({"n": 1})]
    # its $disconnect runs during the first pause
    proxy_sleep = sleeps.append

    def disconnect_during_pause(seconds: float) -> None:
        proxy_sleep(seconds)
        registry.delete("booking#1", "A=")

    proxy = Proxy(
        Clients(
            proxy.settings,
            registry,
            FakeBackend(),
            FakeInvoker(),
            lambda endpoint: gateway,
            clock=lambda: NOW,
            sleep=disconnect_during_pause,
        )
    )
    result = proxy.deliver.handle(
        {"connection_id": "A=", "channel": "booking#1", "frames": pack_frames(frames)}, long()
    )
    assert result["outcome"] == "gone"
    assert sleeps == [0.05]


def test_deliver_posts_only_through_the_configured_or_stored_endpoint() -> None:
    proxy, registry, _, gateways, _, _ = make()
    add(registry, "A=")
    gateways[ENDPOINT] = FakeGateway(endpoint=ENDPOINT, open={"A="})
    event = {
        "connection_id": "A=",
        "channel": "booking#1",
        "frames": pack_frames([b"{}"]),
        "endpoint": "https://attacker.example.net/x",
    }
    assert proxy.deliver.handle(event, long())["outcome"] == "delivered"
    assert set(gateways) == {ENDPOINT}
    assert gateways[ENDPOINT].received == {"A=": [b"{}"]}


def test_deliver_for_a_connection_not_in_the_table_posts_nothing() -> None:
    proxy, _registry, _, gateways, _, _ = make()
    event = {"connection_id": "V=", "channel": "booking#1", "frames": pack_frames([b"{}"])}
    assert proxy.deliver.handle(event, long())["outcome"] == "gone"
    assert gateways == {}


def test_sender_gone_during_its_reply_is_removed() -> None:
    proxy, registry, backend, _gateways, _, _ = make()
    add(registry, "A=")
    backend.answers["/api/chat/ws/1/message"] = {"type": "ack"}
    proxy.message.handle(typed(events.message_event("A=", {"body": "x"})), long())
    assert registry.items == {}


def test_a_connection_that_fails_a_frame_gets_no_later_frames() -> None:
    proxy, registry, backend, gateways, _, _ = make()
    for cid in ("A=", "B="):
        add(registry, cid)
    gateway = gateways.setdefault(ENDPOINT, FakeGateway(endpoint=ENDPOINT))
    gateway.open.update({"A=", "B="})
    gateway.scripted["B="] = [PostOutcome.FAILED]
    history = {"type": "history", "messages": [{"b": "x" * 1000} for _ in range(300)], "broadcast": True}
    backend.answers["/api/chat/ws/1/message"] = history
    proxy.message.handle(typed(events.message_event("A=", {"body": "load"})), long())
    assert len(gateway.received["A="]) >= 3
    assert "B=" not in gateway.received
    assert set(registry.items) == {("booking#1", "A="), ("booking#1", "B=")}  # a failure is not a disconnect


def test_broadcast_chunks_carry_the_channel_ids_and_frames_but_no_endpoint() -> None:
    proxy, registry, backend, gateways, invoker, _ = make(push_chunk_size=2)
    for cid in ("A=", "B=", "C=", "D=", "E="):
        add(registry, cid)
    gateway = FakeGateway(endpoint=ENDPOINT, open={"A=", "B=", "C=", "D=", "E="})
    gateways[gateway.endpoint] = gateway
    backend.answers["/api/chat/ws/1/message"] = {"type": "message", "broadcast": True}
    proxy.message.handle(typed(events.message_event("E=", {"body": "x"})), long())
    assert set(gateway.received) == {"E=", "A="}  # the sender is in the first chunk
    names = [name for name, _ in invoker.calls]
    assert names == ["fanout-fn", "fanout-fn"]
    chunks = [payload["chunk"] for _, payload in invoker.calls]
    assert [c["connection_ids"] for c in chunks] == [["B=", "C="], ["D="]]
    assert all(c["channel"] == "booking#1" and "endpoint" not in c for c in chunks)
    assert unpack_frames(chunks[0]["frames"]) == [
        b'{"type":"message","broadcast":true,"booking_id":"1","connection_type":"chat"}'
    ]


def test_push_without_configured_name_chunks_through_its_sibling_fanout_function() -> None:
    proxy, registry, _, _, invoker, _ = make(
        push_chunk_size=1, api_gateway_endpoint="https://e/dev", fanout_function_name=None
    )
    for cid in ("A=", "B="):
        add(registry, cid, ctype="booking")
    event = {"channel": {"booking_id": "1"}, "payload": {"type": "x"}}
    result = proxy.push.handle(event, long(), "ws-proxy-prod-push")
    assert result["queued"] == 1
    assert [name for name, _ in invoker.calls] == ["ws-proxy-prod-fanout"]


def test_connect_rejected_by_backend_never_writes_an_item() -> None:
    from chalicelib.errors import Unauthorized

    proxy, registry, backend, _, invoker, _ = make()
    backend.answers["/api/chat/ws/1/connect"] = Unauthorized("expired")
    response = proxy.connect.handle(
        typed(events.connect_event("A=", {"booking_id": "1", "token": "t"})), long()
    )
    assert response == {"statusCode": 401, "body": "expired"}
    assert registry.items == {}
    assert invoker.calls == []


def test_a_broadcasts_unsent_copy_for_the_sender_is_handed_on_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy, registry, backend, gateways, invoker, _ = make()
    for cid in ("A=", "B="):
        add(registry, cid)
    gateway = FakeGateway(endpoint=ENDPOINT, open={"A=", "B="})
    gateway.scripted["A="] = [PostOutcome.UNSENT]  # the deadline left no time for the sender's copy
    gateways[gateway.endpoint] = gateway
    backend.answers["/api/chat/ws/1/message"] = {"type": "message", "broadcast": True}
    with caplog.at_level(logging.INFO, logger="chalicelib"):
        proxy.message.handle(typed(events.message_event("A=", {"body": "x", "id": "r1"})), long())
    assert "B=" in gateway.received
    ((_, payload),) = invoker.calls  # the sender's copy, with its ref, for a later invocation
    assert payload["chunk"]["connection_ids"] == ["A="]
    assert json.loads(unpack_frames(payload["chunk"]["frames"])[0])["ref"] == "r1"
    (summary,) = [r for r in caplog.records if getattr(r, "summary", False)]
    assert (summary.delivered, summary.unsent) == (1, 1)  # type: ignore[attr-defined]


def test_hand_offs_keep_the_deadline_and_handing_on_what_had_no_time_may_use_the_reserve() -> None:
    """A large channel's later chunks go within the handler's deadline; posts the deadline left
    no time for are handed on within the reserve past it (as the delivery_failed notes are)."""
    proxy, registry, backend, gateways, invoker, _ = make(push_chunk_size=1)
    for cid in ("A=", "B=", "C="):
        add(registry, cid)
    gateway = FakeGateway(endpoint=ENDPOINT, open={"A=", "B=", "C="})
    gateway.scripted["A="] = [PostOutcome.UNSENT]
    gateways[gateway.endpoint] = gateway
    backend.answers["/api/chat/ws/1/message"] = {"type": "message", "broadcast": True}
    deadline = long()
    proxy.message.handle(typed(events.message_event("A=", {"body": "x"})), deadline)
    chunks = [payload["chunk"]["connection_ids"] for _, payload in invoker.calls]
    assert chunks == [["B="], ["C="], ["A="]]  # two later chunks, then the unsent copy handed on
    assert invoker.deadlines == [deadline, deadline, deadline.later(RESERVE_FOR_NOTES)]


class LaggingIndex(FakeRegistry):
    """The connection_id index as DynamoDB may serve it: what it held a moment ago."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: NOW)
        self.snapshot: list[Connection] | None = None

    def connection_items(
        self, connection_id: str, *, live: bool = True, deadline: Deadline | None = None
    ) -> list[Connection]:
        if self.snapshot is not None:
            return [c for c in self.snapshot if c.connection_id == connection_id]
        return super().connection_items(connection_id, live=live, deadline=deadline)


def test_a_subscribe_right_after_an_unsubscribe_is_written_whatever_the_index_still_says() -> None:
    registry = LaggingIndex()
    backend = FakeBackend(answers={"/api/chat/ws/2/connect": {"user_id": "u"}})
    gateway = FakeGateway(endpoint=ENDPOINT, open={"U="})
    settings = Settings(backend_url="https://api.example.com", connections_table="t")
    clients = Clients(settings, registry, backend, FakeInvoker(), lambda _: gateway, clock=lambda: NOW)
    message = MessageCase(clients)
    home = Connection("U=", "user#u", "chat", user_id="u", token="t", created_at=NOW, ttl=NOW + 60)
    registry.put(home)

    def send(frame: dict[str, Any]) -> dict[str, Any]:
        message.handle(typed(events.message_event("U=", frame)), long())
        answer: dict[str, Any] = json.loads(gateway.received["U="][-1])
        return answer

    assert send({"type": "subscribe", "booking_id": "2"})["type"] == "subscribed"
    registry.snapshot = registry.connection_items("U=")  # the index still shows the subscription
    assert send({"type": "unsubscribe", "booking_id": "2"})["type"] == "unsubscribed"
    assert ("booking#2", "U=") not in registry.items
    assert send({"type": "subscribe", "booking_id": "2"})["type"] == "subscribed"
    assert registry.items[("booking#2", "U=")].types == {"chat"}


def test_a_channel_read_cut_short_sends_to_the_members_found_and_tells_the_sender() -> None:
    """The channel's second page could not be read in time: the first page's members still
    get the message, the sender is told it was accepted but not delivered to everyone."""
    proxy, registry, backend, gateways, _, _ = make()
    for cid in ("A=", "B=", "C="):
        add(registry, cid)
    gateway = gateways.setdefault(ENDPOINT, FakeGateway(endpoint=ENDPOINT, open={"A=", "B=", "C="}))
    backend.answers["/api/chat/ws/1/message"] = {"type": "message", "broadcast": True}

    def first_page_only(channel: str, connection_type: str | None, **kwargs: Any) -> Iterator[str]:
        yield "B="
        raise BackendUnavailable("the connection registry is unavailable; try again")

    registry.channel_ids = first_page_only  # type: ignore[method-assign]
    proxy.message.handle(typed(events.message_event("A=", {"body": "x", "id": "m-1"})), long())
    assert [json.loads(f)["type"] for f in gateway.received["B="]] == ["message"]
    assert "C=" not in gateway.received
    (frame,) = (json.loads(f) for f in gateway.received["A="])
    assert (frame["code"], frame["ref"]) == ("delivery_failed", "m-1")
