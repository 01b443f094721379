"""ConnectionRegistry: the connections table (CONTRACT.md §3).

Uses the low-level DynamoDB client (thread-safe, shared by fan-out threads).
A ``$default`` or ``$disconnect`` finds its connection with one Query on the
``connection_id-index`` GSI, never a Scan. Reads skip items whose ``ttl`` has
passed. AWS failures surface as ``BackendUnavailable`` (retryable).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import BackendUnavailable
from chalicelib.schema import CONNECTION_INDEX, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE

logger = logging.getLogger(__name__)

#: Pauses between GSI lookups that miss (the index is eventually consistent).
DEFAULT_LOOKUP_RETRY_DELAYS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
#: Found connections kept per container: a connection's item never changes while it
#: lives and ids are never reused, so a warm container skips the GSI Query for a
#: connection that already sent a message. Bounded in size and age.
DEFAULT_CACHE_SIZE = 10_000
DEFAULT_CACHE_SECONDS = 300.0


@dataclass(frozen=True)
class Connection:
    connection_id: str
    channel: str
    connection_type: str
    user_id: str | None = None
    token: str | None = None
    created_at: int = 0
    ttl: int = 0

    def __repr__(self) -> str:  # never show the token, even in a traceback or log
        return (
            f"Connection(connection_id={self.connection_id!r}, channel={self.channel!r}, "
            f"connection_type={self.connection_type!r}, user_id={self.user_id!r})"
        )


@dataclass(frozen=True)
class ChannelPage:
    connection_ids: list[str]
    #: Where the next page starts (DynamoDB's LastEvaluatedKey); None at the end.
    next_key: dict[str, Any] | None


def _to_item(conn: Connection) -> dict[str, Any]:
    item: dict[str, Any] = {
        PARTITION_KEY: {"S": conn.channel},
        SORT_KEY: {"S": conn.connection_id},
        "connection_type": {"S": conn.connection_type},
        "created_at": {"N": str(conn.created_at)},
        TTL_ATTRIBUTE: {"N": str(conn.ttl)},
    }
    if conn.user_id is not None:
        item["user_id"] = {"S": conn.user_id}
    if conn.token is not None:
        item["token"] = {"S": conn.token}
    return item


def _from_item(item: dict[str, Any]) -> Connection:
    def s(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value else None

    def n(name: str) -> int:
        value = item.get(name)
        return int(float(value["N"])) if value else 0

    return Connection(
        connection_id=s(SORT_KEY) or "",
        channel=s(PARTITION_KEY) or "",
        connection_type=s("connection_type") or "",
        user_id=s("user_id"),
        token=s("token"),
        created_at=n("created_at"),
        ttl=n(TTL_ATTRIBUTE),
    )


class ConnectionRegistry:
    """The live connections, keyed by channel and connection id."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        lookup_retry_delays: Sequence[float] = DEFAULT_LOOKUP_RETRY_DELAYS,
        cache_size: int = DEFAULT_CACHE_SIZE,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
    ) -> None:
        self._client = client
        self._table = table_name
        self._clock = clock
        self._sleep = sleep
        self._delays = tuple(lookup_retry_delays)
        self._cache: OrderedDict[str, tuple[float, Connection]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_seconds = cache_seconds
        self._cache_lock = threading.Lock()

    def _cached(self, connection_id: str) -> Connection | None:
        now = self._clock()
        with self._cache_lock:
            entry = self._cache.get(connection_id)
            if entry is None:
                return None
            stored, conn = entry
            if now - stored > self._cache_seconds or conn.ttl <= now:
                del self._cache[connection_id]
                return None
            self._cache.move_to_end(connection_id)
            return conn

    def _remember(self, conn: Connection) -> None:
        if self._cache_size <= 0:
            return
        with self._cache_lock:
            self._cache[conn.connection_id] = (self._clock(), conn)
            self._cache.move_to_end(conn.connection_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _forget(self, connection_id: str) -> None:
        with self._cache_lock:
            self._cache.pop(connection_id, None)

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, operation)(TableName=self._table, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            code = exc.response["Error"]["Code"] if isinstance(exc, ClientError) else type(exc).__name__
            logger.error("dynamodb call failed", extra={"operation": operation, "error": code})
            raise BackendUnavailable("the connection registry is unavailable; try again") from exc

    def put(self, conn: Connection) -> None:
        self._call("put_item", Item=_to_item(conn))

    def delete(self, channel: str, connection_id: str) -> None:
        self._forget(connection_id)
        self._call(
            "delete_item",
            Key={PARTITION_KEY: {"S": channel}, SORT_KEY: {"S": connection_id}},
        )

    def find(self, connection_id: str, *, retry: bool = True, cached: bool = True) -> Connection | None:
        """The live connection with this id: one GSI Query, retried briefly on a miss.

        A connection found before in this container is answered from the cache
        (``cached=False`` always asks DynamoDB).
        """
        if cached:
            hit = self._cached(connection_id)
            if hit is not None:
                return hit
        delays = self._delays if retry else ()
        attempt = 0
        while True:
            found = self._query_index(connection_id)
            if found is not None:
                self._remember(found)
                return found
            if attempt >= len(delays):
                return None
            self._sleep(delays[attempt])
            attempt += 1

    def _query_index(self, connection_id: str) -> Connection | None:
        now = int(self._clock())
        response = self._call(
            "query",
            IndexName=CONNECTION_INDEX,
            KeyConditionExpression="#c = :c",
            ExpressionAttributeNames={"#c": SORT_KEY},
            ExpressionAttributeValues={":c": {"S": connection_id}},
        )
        for item in response.get("Items", []):
            conn = _from_item(item)
            if conn.ttl > now:
                return conn
        return None

    def channel_page(
        self,
        channel: str,
        connection_type: str | None,
        *,
        start_key: dict[str, Any] | None = None,
        limit: int | None = None,
    ) -> ChannelPage:
        """One page of live connection ids in ``channel`` (optionally one type)."""
        names = {"#p": PARTITION_KEY, "#t": TTL_ATTRIBUTE, "#id": SORT_KEY}
        values: dict[str, Any] = {":p": {"S": channel}, ":now": {"N": str(int(self._clock()))}}
        condition = "#t > :now"
        if connection_type is not None:
            names["#ct"] = "connection_type"
            values[":ct"] = {"S": connection_type}
            condition += " AND #ct = :ct"
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "#p = :p",
            "FilterExpression": condition,
            "ProjectionExpression": "#id",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if start_key:
            kwargs["ExclusiveStartKey"] = start_key
        if limit:
            kwargs["Limit"] = limit
        response = self._call("query", **kwargs)
        ids = [item[SORT_KEY]["S"] for item in response.get("Items", [])]
        return ChannelPage(ids, response.get("LastEvaluatedKey"))

    def channel_ids(self, channel: str, connection_type: str | None) -> Iterator[str]:
        """Every live connection id in ``channel``, following DynamoDB's pages."""
        key: dict[str, Any] | None = None
        while True:
            page = self.channel_page(channel, connection_type, start_key=key)
            yield from page.connection_ids
            key = page.next_key
            if not key:
                return
