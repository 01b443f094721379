"""ConnectionRegistry: the connections table (``chalicelib/schema.py``).

Uses the low-level DynamoDB client (thread-safe, shared by fan-out threads).
A ``$default`` or ``$disconnect`` finds its connection with one Query on the
``connection_id-index`` GSI, never a Scan. Reads skip items whose ``ttl`` has
passed. AWS failures surface as ``BackendUnavailable`` (retryable).

An item: ``booking_id`` (the partition key; it holds the channel key, e.g.
``booking#42``, see ``routes.channel_key``), ``connection_id`` (sort key),
``connection_type``, ``booking`` (the booking id, for chat and booking),
``user_id`` (what the backend answered on connect), ``token`` (only a token the
backend verified), ``endpoint`` (the Management API endpoint of the API that
accepted the connection), ``created_at`` and ``ttl``.

Every attribute but the token is fixed for the item's life; ``auth`` replaces the
token, in whichever container it runs. So the per-container cache of found
connections holds everything but the token, and ``find`` reads a connection's token
with a consistent GetItem each time: a message forwards the latest token accepted,
never one another container has since replaced.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import BackendUnavailable, UnknownConnection
from chalicelib.model import Connection
from chalicelib.schema import CONNECTION_INDEX, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE

logger = logging.getLogger(__name__)

#: Pauses between GSI lookups that miss (the index is eventually consistent).
DEFAULT_LOOKUP_RETRY_DELAYS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
#: Found connections kept per container, without their token: an item's other attributes
#: never change while it lives and ids are never reused, so a warm container skips the
#: GSI Query for a connection that already sent a message. Bounded in size and age.
DEFAULT_CACHE_SIZE = 10_000
DEFAULT_CACHE_SECONDS = 300.0
#: A channel counted full is answered full this long without counting it again: a storm
#: of refused handshakes must not read the whole channel each.
FULL_CHANNEL_SECONDS = 5.0


#: DynamoDB's BatchGetItem limit.
BATCH_GET_KEYS = 100


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
        # connection id -> (when cached, the connection without its token, whether it has one)
        self._cache: OrderedDict[str, tuple[float, Connection, bool]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_seconds = cache_seconds
        self._cache_lock = threading.Lock()
        # channel -> when it was last counted full
        self._full: dict[str, float] = {}

    def _cached(self, connection_id: str) -> tuple[Connection, bool] | None:
        """The cached connection (without its token) and whether it has a token."""
        now = self._clock()
        with self._cache_lock:
            entry = self._cache.get(connection_id)
            if entry is None:
                return None
            stored, conn, has_token = entry
            if now - stored > self._cache_seconds or conn.ttl <= now:
                del self._cache[connection_id]
                return None
            self._cache.move_to_end(connection_id)
            return conn, has_token

    def _remember(self, conn: Connection) -> None:
        if self._cache_size <= 0:
            return
        with self._cache_lock:
            entry = (self._clock(), replace(conn, token=None), conn.token is not None)
            self._cache[conn.connection_id] = entry
            self._cache.move_to_end(conn.connection_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _forget(self, connection_id: str) -> None:
        with self._cache_lock:
            self._cache.pop(connection_id, None)

    def _call(self, operation: str, *, table_argument: bool = True, **kwargs: Any) -> Any:
        """The client's answer; None when the call's ``ConditionExpression`` did not hold."""
        if table_argument:
            kwargs["TableName"] = self._table
        try:
            return getattr(self._client, operation)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            code = exc.response["Error"]["Code"] if isinstance(exc, ClientError) else type(exc).__name__
            if code == "ConditionalCheckFailedException" and "ConditionExpression" in kwargs:
                return None
            logger.error("dynamodb call failed", extra={"operation": operation, "error": code})
            raise BackendUnavailable("the connection registry is unavailable; try again") from exc

    def put(self, conn: Connection) -> None:
        self._call("put_item", Item=to_item(conn))

    def delete(self, channel: str, connection_id: str, *, created_before: int | None = None) -> bool:
        """Remove the item; with ``created_before``, only an item created before that time.

        False when the condition kept the item (a connection so new that it may still be in
        its handshake, for which the Management API answers 410 too).
        """
        self._forget(connection_id)
        if created_before is None:
            self._call("delete_item", Key=self._key(channel, connection_id))
            return True
        deleted = self._call(
            "delete_item",
            Key=self._key(channel, connection_id),
            ConditionExpression="attribute_not_exists(#c) OR #c < :before",
            ExpressionAttributeNames={"#c": "created_at"},
            ExpressionAttributeValues={":before": {"N": str(created_before)}},
        )
        return deleted is not None

    def _key(self, channel: str, connection_id: str) -> dict[str, Any]:
        return {PARTITION_KEY: {"S": channel}, SORT_KEY: {"S": connection_id}}

    def get(self, channel: str, connection_id: str) -> Connection | None:
        """The live item of this connection in this channel (a consistent read), or None."""
        response = self._call("get_item", Key=self._key(channel, connection_id), ConsistentRead=True)
        item = response.get("Item")
        if not item:
            return None
        conn = from_item(item)
        return conn if conn.ttl > int(self._clock()) else None

    def endpoints(self, channel: str, connection_ids: Sequence[str]) -> dict[str, str | None]:
        """For each live connection of ``channel`` among ``connection_ids``: its stored endpoint.

        Ids that are not (or no longer) in the channel are absent from the answer.
        """
        found: dict[str, str | None] = {}
        now = int(self._clock())
        wanted = list(dict.fromkeys(connection_ids))
        for start in range(0, len(wanted), BATCH_GET_KEYS):
            keys: list[dict[str, Any]] = [
                self._key(channel, cid) for cid in wanted[start : start + BATCH_GET_KEYS]
            ]
            attempts = 0
            while keys:
                response = self._call(
                    "batch_get_item",
                    RequestItems={
                        self._table: {
                            "Keys": keys,
                            "ProjectionExpression": "#id, #e, #t",
                            "ExpressionAttributeNames": {
                                "#id": SORT_KEY,
                                "#e": "endpoint",
                                "#t": TTL_ATTRIBUTE,
                            },
                        }
                    },
                    table_argument=False,
                )
                for item in response.get("Responses", {}).get(self._table, []):
                    conn = from_item(item)
                    if conn.ttl > now:
                        found[conn.connection_id] = conn.endpoint
                keys = response.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", [])
                attempts += 1
                if keys and attempts >= len(self._delays) + 1:
                    raise BackendUnavailable("the connection registry is throttling; try again")
                if keys:
                    self._sleep(self._delays[attempts - 1])
        return found

    def update_token(self, conn: Connection, token: str) -> Connection:
        """Replace the stored token of a live connection; the updated connection.

        Only an item that has a token gets a new one: whether a connection has a token
        is fixed for its life, which is what lets ``find`` skip the read for one without.
        """
        updated_item = self._call(
            "update_item",
            Key=self._key(conn.channel, conn.connection_id),
            UpdateExpression="SET #tok = :tok",
            ConditionExpression="attribute_exists(#tok)",
            ExpressionAttributeNames={"#tok": "token"},
            ExpressionAttributeValues={":tok": {"S": token}},
        )
        if updated_item is None:
            self._forget(conn.connection_id)
            raise UnknownConnection("this connection is not registered; reconnect")
        return replace(conn, token=token)

    def find(
        self, connection_id: str, *, retry: bool = True, cached: bool = True, token: bool = True
    ) -> Connection | None:
        """The live connection with this id: one GSI Query, retried briefly on a miss.

        A connection found before in this container is answered from the cache
        (``cached=False`` always asks DynamoDB). A connection with a token gets the one
        stored now (a consistent GetItem: the cache and the eventually consistent index
        may hold one an ``auth`` has replaced since); ``token=False`` skips that read
        and answers no token.
        """
        if cached:
            hit = self._cached(connection_id)
            if hit is not None:
                conn, has_token = hit
                return self._with_token(conn) if token and has_token else conn
        delays = self._delays if retry else ()
        attempt = 0
        while True:
            found = self._query_index(connection_id)
            if found is not None:
                self._remember(found)
                if found.token is None:
                    return found
                return self._with_token(found) if token else replace(found, token=None)
            if attempt >= len(delays):
                return None
            self._sleep(delays[attempt])
            attempt += 1

    def _with_token(self, conn: Connection) -> Connection | None:
        """``conn`` with the token its item holds now; None when the item is gone or expired."""
        response = self._call(
            "get_item",
            Key=self._key(conn.channel, conn.connection_id),
            ConsistentRead=True,
            ProjectionExpression="#tok, #t",
            ExpressionAttributeNames={"#tok": "token", "#t": TTL_ATTRIBUTE},
        )
        item = response.get("Item")
        if not item or int(float(item.get(TTL_ATTRIBUTE, {"N": "0"})["N"])) <= int(self._clock()):
            self._forget(conn.connection_id)
            return None
        stored = item.get("token")
        return replace(conn, token=stored["S"] if stored else None)

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
            conn = from_item(item)
            if conn.ttl > now:
                return conn
        return None

    def count(self, channel: str, limit: int) -> int:
        """Live connections of ``channel``, counted up to ``limit`` (at most ``limit`` items read).

        A channel counted full (``limit`` or more) is answered ``limit`` for
        ``FULL_CHANNEL_SECONDS`` without another Query.
        """
        now = self._clock()
        counted_full = self._full.get(channel)
        if counted_full is not None and now - counted_full < FULL_CHANNEL_SECONDS:
            return limit
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "#p = :p",
            "FilterExpression": "#t > :now",
            "Select": "COUNT",
            "ExpressionAttributeNames": {"#p": PARTITION_KEY, "#t": TTL_ATTRIBUTE},
            "ExpressionAttributeValues": {":p": {"S": channel}, ":now": {"N": str(int(now))}},
        }
        counted = 0
        while counted < limit:
            kwargs["Limit"] = limit - counted  # items read, before the filter: no more than needed
            response = self._call("query", **kwargs)
            counted += int(response.get("Count", 0))
            if not response.get("LastEvaluatedKey"):
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        if counted >= limit:
            self._full[channel] = now
        else:
            self._full.pop(channel, None)
        return min(counted, limit)

    def channel_ids(
        self, channel: str, connection_type: str | None, *, page_size: int | None = None
    ) -> Iterator[str]:
        """Every live connection id in ``channel`` (optionally one type), following DynamoDB's pages."""
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
        if page_size:
            kwargs["Limit"] = page_size
        while True:
            response = self._call("query", **kwargs)
            yield from (item[SORT_KEY]["S"] for item in response.get("Items", []))
            if not response.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def to_item(conn: Connection) -> dict[str, Any]:
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
    if conn.booking_id is not None:
        item["booking"] = {"S": conn.booking_id}
    if conn.endpoint is not None:
        item["endpoint"] = {"S": conn.endpoint}
    return item


def from_item(item: dict[str, Any]) -> Connection:
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
        booking_id=s("booking"),
        endpoint=s("endpoint"),
    )
