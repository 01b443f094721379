"""The registry's contract, run against moto and against the in-memory fake alike."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.deadline import Deadline
from chalicelib.errors import BackendUnavailable
from chalicelib.model import Connection
from chalicelib.registry import ConnectionRegistry
from chalicelib.schema import ensure_table
from tests.fakes import FakeRegistry
from tests.harness import moto_client, moto_registry_client

NOW = 1_800_000_000


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
    def __init__(self, client: Any) -> None:
        self._client = client
        self.queries = 0

    def __getattr__(self, name: str) -> Any:
        if name == "query":
            self.queries += 1
        return getattr(self._client, name)


def test_channel_pages_cover_every_connection_exactly_once(moto_endpoint: str) -> None:
    client = moto_client(moto_endpoint)
    table = f"registry-{uuid.uuid4().hex[:8]}"
    ensure_table(client, table)
    counting = CountingClient(moto_registry_client(moto_endpoint))
    registry = ConnectionRegistry(counting, table, clock=lambda: NOW)
    try:
        ids = [f"P{i:02d}=" for i in range(23)]
        for cid in ids:
            registry.put(conn(cid, ctype="chat" if int(cid[1:3]) % 3 else "feed"))
        seen = list(registry.channel_ids("1", "chat", page_size=5))
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
    sleeps.clear()
    assert registry.find("missing=", retry=False) is None
    assert sleeps == []
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
    assert registry.find("A=", cached=False) is not None
    assert counting.queries == 2
    registry.delete("1", "A=")
    assert registry.find("A=") is None
    assert counting.queries == 3
    registry.find("B=")
    registry.find("C=")
    registry.find("B=")
    assert counting.queries == 5  # B cached
    registry.put(conn("D=", ttl=NOW + 3600))
    registry.find("D=")  # evicts C, the least recently used (size 2)
    registry.find("C=")
    assert counting.queries == 7
    now[0] += 61  # older than cache_seconds: asked again
    registry.find("C=")
    assert counting.queries == 8
    client.delete_table(TableName=table)


def test_a_channel_query_reads_no_page_past_the_deadline(moto_endpoint: str) -> None:
    """The pages read before the deadline are answered; the next one is never asked for."""
    client = moto_client(moto_endpoint)
    table = f"pages-{uuid.uuid4().hex[:8]}"
    ensure_table(client, table)
    counting = CountingClient(moto_registry_client(moto_endpoint))
    registry = ConnectionRegistry(counting, table, clock=clock)
    try:
        for i in range(12):
            registry.put(conn(f"P{i:02d}="))
        # the clock the deadline reads: time enough for one call, then none
        readings = iter([0.0])
        deadline = Deadline(10.0, lambda: next(readings, 100.0))
        seen: list[str] = []
        with pytest.raises(BackendUnavailable):
            seen.extend(registry.channel_ids("1", "chat", page_size=5, deadline=deadline))
        assert len(seen) == 5  # the first page
        assert counting.queries == 2  # the second was asked for, and not sent
    finally:
        client.delete_table(TableName=table)
