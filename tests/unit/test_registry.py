"""The registry's contract, run against moto and against the in-memory fake alike."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.deadline import Deadline
from chalicelib.errors import BackendUnavailable, UnknownConnection
from chalicelib.model import Connection
from chalicelib.registry import FULL_CHANNEL_SECONDS, ConnectionRegistry
from infra.table import ensure_table
from tests.fakes import FakeRegistry
from tests.harness import moto_client, moto_registry_client
from tests.standins import DynamoDbRecorder

NOW = 1_800_000_000
ENDPOINT = "https://api.example.com/development"


def clock() -> float:
    return float(NOW)


def conn(cid: str, channel: str = "1", ctype: str = "chat", ttl: int = NOW + 60, **kw: Any) -> Connection:
    return Connection(cid, channel, ctype, ttl=ttl, created_at=NOW - 1, **kw)


@pytest.fixture(params=["moto", "fake"])
def registry(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "fake":
        yield FakeRegistry(clock=clock)
        return
    endpoint = request.getfixturevalue("moto_endpoint")
    client = moto_client(endpoint)
    table = f"registry-{uuid.uuid4().hex[:8]}"
    ensure_table(client, table)
    yield ConnectionRegistry(moto_registry_client(endpoint), table, clock=clock, lookup_retry_delays=())
    client.delete_table(TableName=table)


def test_put_then_find_returns_every_attribute(registry: Any) -> None:
    registry.put(conn("A=", user_id="u1", token="secret"))
    found = registry.find("A=")
    assert found == conn("A=", user_id="u1", token="secret")


def test_find_misses_unknown_and_expired(registry: Any) -> None:
    registry.put(conn("OLD=", ttl=NOW - 1))
    assert registry.find("NOPE=") is None
    assert registry.find("OLD=") is None


def test_delete_removes_only_that_item(registry: Any) -> None:
    registry.put(conn("A="))
    registry.put(conn("B="))
    registry.delete("1", "A=")
    registry.delete("1", "never-there=")
    assert registry.find("A=") is None
    assert registry.find("B=") is not None


def test_channel_ids_filter_by_channel_type_and_ttl(registry: Any) -> None:
    registry.put(conn("A="))
    registry.put(conn("B=", ctype="booking"))
    registry.put(conn("C=", ttl=NOW))
    registry.put(conn("D=", channel="2"))
    assert sorted(registry.channel_ids("1", "chat")) == ["A="]
    assert sorted(registry.channel_ids("1", None)) == ["A=", "B="]
    assert list(registry.channel_ids("3", None)) == []


class CountingClient:
    """The thin client, counting Queries; with ``page_size``, each Query reads at most that many items."""

    def __init__(self, client: Any, page_size: int | None = None) -> None:
        self._client = client
        self.queries = 0
        self.page_size = page_size

    def call(self, operation: str, params: dict[str, Any], deadline: Deadline | None = None) -> Any:
        if operation == "Query":
            self.queries += 1
            params = params | ({"Limit": self.page_size} if self.page_size else {})
        return self._client.call(operation, params, deadline)


def test_channel_pages_cover_every_connection_exactly_once(moto_endpoint: str) -> None:
    client = moto_client(moto_endpoint)
    table = f"registry-{uuid.uuid4().hex[:8]}"
    ensure_table(client, table)
    counting = CountingClient(moto_registry_client(moto_endpoint), page_size=5)
    registry = ConnectionRegistry(counting, table, clock=lambda: NOW)
    try:
        ids = [f"P{i:02d}=" for i in range(23)]
        for cid in ids:
            registry.put(conn(cid, ctype="chat" if int(cid[1:3]) % 3 else "feed"))
        seen = list(registry.channel_ids("1", "chat"))
        assert sorted(seen) == sorted(c for c in ids if int(c[1:3]) % 3)
        assert len(seen) == len(set(seen))
        assert counting.queries >= 5  # one Query per page of 5 items
    finally:
        client.delete_table(TableName=table)


def test_moto_registry_retries_a_miss_then_gives_up(moto_endpoint: str) -> None:
    client = moto_client(moto_endpoint)
    table = f"registry-{uuid.uuid4().hex[:8]}"
    ensure_table(client, table)
    sleeps: list[float] = []
    registry = ConnectionRegistry(
        moto_registry_client(moto_endpoint), table, sleep=sleeps.append, lookup_retry_delays=(0.01, 0.02)
    )
    assert registry.find("missing=") is None
    assert sleeps == [0.01, 0.02]
    client.delete_table(TableName=table)


def test_aws_failures_become_backend_unavailable(moto_endpoint: str) -> None:
    registry = ConnectionRegistry(
        moto_registry_client(moto_endpoint), "no-such-table", lookup_retry_delays=()
    )
    with pytest.raises(BackendUnavailable) as info:
        registry.put(conn("A="))
    assert info.value.retryable is True


def test_ensure_table_is_idempotent_and_enables_ttl(moto_endpoint: str) -> None:
    client = moto_client(moto_endpoint)
    table = f"schema-{uuid.uuid4().hex[:8]}"
    assert ensure_table(client, table) is True
    assert ensure_table(client, table) is False
    description = client.describe_table(TableName=table)["Table"]
    (index,) = description["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "connection_id-index"
    assert index["KeySchema"] == [{"AttributeName": "connection_id", "KeyType": "HASH"}]
    assert index["Projection"] == {"ProjectionType": "ALL"}
    ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "ttl"
    assert ttl["TimeToLiveStatus"] == "ENABLED"
    client.delete_table(TableName=table)


def test_connection_repr_never_shows_the_token() -> None:
    assert "secret" not in repr(conn("A=", token="secret"))


def test_found_connections_are_cached_until_deleted_expired_or_aged(moto_endpoint: str) -> None:
    client = moto_client(moto_endpoint)
    table = f"cache-{uuid.uuid4().hex[:8]}"
    ensure_table(client, table)
    counting = CountingClient(moto_registry_client(moto_endpoint))
    now = [float(NOW)]
    registry = ConnectionRegistry(
        counting, table, clock=lambda: now[0], lookup_retry_delays=(), cache_size=2, cache_seconds=60
    )
    for cid in ("A=", "B=", "C="):
        registry.put(conn(cid, ttl=NOW + 3600))
    assert registry.find("A=") == registry.find("A=")
    assert counting.queries == 1
    registry.delete("1", "A=")
    assert registry.find("A=") is None
    assert counting.queries == 2
    registry.find("B=")
    registry.find("C=")
    registry.find("B=")
    assert counting.queries == 4  # B cached
    registry.put(conn("D=", ttl=NOW + 3600))
    registry.find("D=")  # evicts C, the least recently used (size 2)
    registry.find("C=")
    assert counting.queries == 6
    now[0] += 61  # older than cache_seconds: asked again
    registry.find("C=")
    assert counting.queries == 7
    client.delete_table(TableName=table)


def test_update_token_replaces_a_token_and_never_adds_one(registry: Any) -> None:
    registry.put(conn("A=", token="old"))
    registry.put(conn("B="))
    registry.update_token(conn("A=", token="old"), "new")
    assert registry.find("A=").token == "new"
    with pytest.raises(UnknownConnection):
        registry.update_token(conn("B="), "new")
    assert registry.find("B=").token is None
    with pytest.raises(UnknownConnection):
        registry.update_token(conn("GONE=", token="old"), "new")


def test_find_without_token_answers_none_for_it(registry: Any) -> None:
    registry.put(conn("A=", token="secret"))
    assert registry.find("A=", token=False) == conn("A=")
    assert registry.find("A=").token == "secret"
    assert registry.find("A=", token=False) == conn("A=")


def test_a_cached_connection_gets_the_token_stored_now(moto_endpoint: str) -> None:
    client = moto_client(moto_endpoint)
    table = f"cache-{uuid.uuid4().hex[:8]}"
    ensure_table(client, table)
    ours = moto_registry_client(moto_endpoint)
    one = ConnectionRegistry(ours, table, clock=clock, lookup_retry_delays=())
    two = ConnectionRegistry(ours, table, clock=clock, lookup_retry_delays=())
    try:
        one.put(conn("A=", token="first"))
        assert two.find("A=") == conn("A=", token="first")
        one.update_token(conn("A=", token="first"), "second")
        assert two.find("A=") == conn("A=", token="second")
        one.delete("1", "A=")
        assert two.find("A=") is None
    finally:
        client.delete_table(TableName=table)


def test_count_answers_live_connections_of_a_channel_up_to_the_limit(registry: Any) -> None:
    for cid in ("A=", "B=", "C="):
        registry.put(conn(cid, channel="feed#", ctype="feed"))
    registry.put(conn("OLD=", channel="feed#", ctype="feed", ttl=NOW))
    registry.put(conn("X=", channel="booking#1"))
    assert registry.count("feed#", 10) == 3
    assert registry.count("feed#", 2) == 2
    assert registry.count("user#nobody", 5) == 0


def test_count_reads_no_more_than_the_limit_and_remembers_a_full_channel(moto_endpoint: str) -> None:
    client = moto_client(moto_endpoint)
    table = f"count-{uuid.uuid4().hex[:8]}"
    ensure_table(client, table)
    recorder = DynamoDbRecorder(moto_endpoint).start()  # DynamoDB's answers, seen on the wire

    def evaluated() -> list[int]:
        return [answer["ScannedCount"] for operation, answer in recorder.answers if operation == "Query"]

    now = [float(NOW)]
    registry = ConnectionRegistry(
        moto_registry_client(recorder.url), table, clock=lambda: now[0], lookup_retry_delays=()
    )
    try:
        for i in range(12):
            registry.put(conn(f"F{i:02d}=", channel="feed#", ctype="feed", ttl=NOW + 3600))
        assert registry.count("feed#", 20) == 12
        assert registry.count("feed#", 5) == 5
        assert evaluated()[1:] == [5]  # one page of at most the limit
        assert registry.count("feed#", 5) == 5  # full a moment ago: no Query
        assert len(evaluated()) == 2
        now[0] += FULL_CHANNEL_SECONDS
        assert registry.count("feed#", 5) == 5
        assert len(evaluated()) == 3
    finally:
        recorder.stop()
        client.delete_table(TableName=table)


# -- one socket, several channels ------------------------------------------------------------


def sub(cid: str, channel: str, *types: str, home: str = "user#u") -> Connection:
    return Connection(
        cid, channel, types[0], user_id="u", created_at=NOW, ttl=NOW + 60, home=home, types=frozenset(types)
    )


def test_find_answers_the_sockets_own_item_not_a_subscription(registry: Any) -> None:
    registry.subscribe(sub("A=", "booking#1", "chat"))
    registry.subscribe(sub("A=", "booking#2", "chat"))
    assert registry.find("A=") is None  # subscriptions alone are no socket
    registry.put(conn("A=", channel="user#u", user_id="u", token="secret"))
    found = registry.find("A=")
    assert found is not None
    assert (found.channel, found.token, found.subscription) == ("user#u", "secret", False)
    assert sorted(c.channel for c in registry.connection_items("A=")) == ["booking#1", "booking#2", "user#u"]


def test_a_subscription_item_is_in_its_channel_as_each_of_its_types(registry: Any) -> None:
    registry.put(conn("OLD=", channel="booking#1", endpoint=ENDPOINT))  # an item from before subscriptions
    registry.subscribe(sub("A=", "booking#1", "chat"))
    registry.subscribe(sub("A=", "booking#1", "booking"))
    (item,) = [c for c in registry.connection_items("A=") if c.channel == "booking#1"]
    assert item.types == {"chat", "booking"}
    assert item.connection_type == "chat"  # the first type stays
    assert sorted(registry.channel_ids("booking#1", "chat")) == ["A=", "OLD="]
    assert sorted(registry.channel_ids("booking#1", "booking")) == ["A="]
    assert registry.channel_members("booking#1", "booking") == [("A=", "u", None)]
    assert registry.channel_members("booking#1", "chat") == [("A=", "u", None), ("OLD=", None, ENDPOINT)]
    assert registry.unsubscribe("booking#1", "A=", "chat") is True
    assert sorted(registry.channel_ids("booking#1", "chat")) == ["OLD="]
    assert registry.unsubscribe("booking#1", "A=", "chat") is False  # not in it as chat any more
    assert registry.unsubscribe("booking#1", "A=", "booking") is True
    assert registry.connection_items("A=") == []  # no type left: the item is gone
    assert registry.unsubscribe("booking#1", "OLD=", "chat") is False  # a socket's own item stays


def test_a_subscription_item_left_without_types_is_in_its_channel_as_nothing(registry: Any) -> None:
    # What unsubscribe's first write leaves until its delete is done (or if that delete fails):
    # the last type gone, the item still there, its connection_type still the first type.
    registry.put(conn("OLD=", channel="booking#1", endpoint=ENDPOINT))
    registry.put(conn("A=", channel="booking#1", user_id="u", home="user#u"))
    assert sorted(registry.channel_ids("booking#1", "chat")) == ["OLD="]
    assert registry.channel_members("booking#1", "chat") == [("OLD=", None, ENDPOINT)]
    assert sorted(registry.channel_ids("booking#1", None)) == ["A=", "OLD="]  # still removed with the socket


def test_a_sockets_own_item_gains_a_type_and_never_becomes_a_subscription(registry: Any) -> None:
    registry.put(conn("C=", channel="booking#1", token="t"))
    registry.subscribe(Connection("C=", "booking#1", "chat", types=frozenset({"chat", "booking"})))
    assert sorted(registry.channel_ids("booking#1", "booking")) == ["C="]
    assert sorted(registry.channel_ids("booking#1", "chat")) == ["C="]
    with pytest.raises(UnknownConnection):
        registry.subscribe(sub("C=", "booking#1", "chat", home="user#u"))
    assert registry.unsubscribe("booking#1", "C=", "booking") is True
    assert [c.token for c in registry.connection_items("C=")] == ["t"]
    assert sorted(registry.channel_ids("booking#1", "chat")) == ["C="]


def test_remove_connection_deletes_every_item_in_batches_expired_ones_too(registry: Any) -> None:
    registry.put(conn("A=", channel="user#u"))
    for booking in range(30):
        registry.subscribe(sub("A=", f"booking#{booking}", "chat"))
    registry.put(conn("A=", channel="booking#old", ttl=NOW - 5))
    registry.put(conn("B=", channel="booking#1"))
    removed = registry.remove_connection("A=")
    assert len(removed) == 32
    assert registry.connection_items("A=", live=False) == []
    assert registry.find("B=") is not None


def test_a_subscribed_sockets_token_is_read_from_its_own_item(moto_endpoint: str) -> None:
    client = moto_client(moto_endpoint)
    table = f"subtok-{uuid.uuid4().hex[:8]}"
    ensure_table(client, table)
    ours = moto_registry_client(moto_endpoint)
    one = ConnectionRegistry(ours, table, clock=clock, lookup_retry_delays=())
    two = ConnectionRegistry(ours, table, clock=clock, lookup_retry_delays=())
    try:
        one.put(conn("A=", channel="user#u", user_id="u", token="first"))
        for booking in ("1", "2"):
            one.subscribe(sub("A=", f"booking#{booking}", "chat"))
        found = two.find("A=")
        assert found is not None
        assert found.token == "first"
        one.update_token(conn("A=", channel="user#u", user_id="u", token="first"), "second")
        found = two.find("A=")  # from the cache, the token read again from the home item
        assert found is not None
        assert (found.channel, found.token) == ("user#u", "second")
        without = two.find("A=", token=False)
        assert without is not None
        assert without.token is None
        with pytest.raises(UnknownConnection):  # a subscription item has no token to replace
            one.update_token(sub("A=", "booking#1", "chat"), "third")
    finally:
        client.delete_table(TableName=table)


def test_the_feed_count_is_the_feeds_connections_only(registry: Any) -> None:
    registry.put(conn("F=", channel="feed#", ctype="feed"))
    registry.put(conn("A=", channel="user#u", user_id="u", token="t"))
    registry.subscribe(sub("A=", "booking#1", "chat"))
    assert registry.count("feed#", 10) == 1


def test_a_channel_query_reads_no_page_past_the_deadline(moto_endpoint: str) -> None:
    """The pages read before the deadline are answered; the next one is never asked for."""
    client = moto_client(moto_endpoint)
    table = f"pages-{uuid.uuid4().hex[:8]}"
    ensure_table(client, table)
    counting = CountingClient(moto_registry_client(moto_endpoint), page_size=5)
    registry = ConnectionRegistry(counting, table, clock=clock)
    try:
        for i in range(12):
            registry.put(conn(f"P{i:02d}="))
        # the clock the deadline reads: time enough for one call, then none
        readings = iter([0.0])
        deadline = Deadline(10.0, lambda: next(readings, 100.0))
        seen: list[str] = []
        with pytest.raises(BackendUnavailable):
            seen.extend(registry.channel_ids("1", "chat", deadline=deadline))
        assert len(seen) == 5  # the first page
        assert counting.queries == 2  # the second was asked for, and not sent
    finally:
        client.delete_table(TableName=table)


class Unprocessed:
    """The thin client, but every BatchWriteItem leaves its whole batch unprocessed."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.writes = 0
        self.now = 0.0  # the deadline's clock
        self.write_takes = 0.0  # how far each BatchWriteItem moves it

    def call(self, operation: str, params: dict[str, Any], deadline: Deadline | None = None) -> Any:
        if operation != "BatchWriteItem":
            return self._client.call(operation, params, deadline)
        self.writes += 1
        self.now += self.write_takes
        return {"UnprocessedItems": params["RequestItems"]}


def test_unprocessed_deletes_are_retried_only_with_time_left(moto_endpoint: str) -> None:
    client = moto_client(moto_endpoint)
    table = f"unproc-{uuid.uuid4().hex[:8]}"
    ensure_table(client, table)
    unprocessed = Unprocessed(moto_registry_client(moto_endpoint))
    sleeps: list[float] = []
    registry = ConnectionRegistry(
        unprocessed, table, clock=clock, sleep=sleeps.append, lookup_retry_delays=(0.01, 0.02)
    )
    try:
        registry.put(conn("A=", channel="user#u"))
        registry.subscribe(sub("A=", "booking#1", "chat"))
        with pytest.raises(BackendUnavailable):  # time enough: every pause taken, then given up
            registry.remove_connection("A=", deadline=Deadline.after(10.0))
        assert (unprocessed.writes, sleeps) == (3, [0.01, 0.02])
        unprocessed.writes, unprocessed.write_takes = 0, 0.44
        deadline = Deadline(0.5, lambda: unprocessed.now)  # the call made, no time for a pause
        with pytest.raises(BackendUnavailable):
            registry.remove_connection("A=", deadline=deadline)
        assert (unprocessed.writes, sleeps) == (1, [0.01, 0.02])
        assert len(registry.connection_items("A=")) == 2  # nothing was removed
    finally:
        client.delete_table(TableName=table)
