"""ConnectionRegistry: the connections table (``chalicelib/schema.py``).

Uses the thin DynamoDB client (``chalicelib.aws.DynamoDB``: botocore's low-level
names and shapes, thread-safe, shared by fan-out threads). A ``$default`` or
``$disconnect`` finds its connection with one Query on the ``connection_id-index``
GSI, never a Scan. Reads skip items whose ``ttl`` has passed. AWS failures surface
as ``BackendUnavailable`` (retryable).

Every method takes the caller's ``deadline``: each DynamoDB call gets the time left
(its attempts and their timeouts, ``chalicelib.aws``), a lookup's pauses and a
Query's next page start only with time left, and a call with none left fails as
``BackendUnavailable`` instead of running past the handler's deadline.

An item: ``booking_id`` (the partition key; it holds the channel key, e.g.
``booking#42``, see ``routes.channel_key``), ``connection_id`` (sort key),
``connection_type``, ``booking`` (the booking id, for chat and booking),
``user_id`` (what the backend answered on connect), ``token`` (only a token the
backend verified), ``endpoint`` (the Management API endpoint of the API that
accepted the connection), ``created_at`` and ``ttl``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from chalicelib.aws import AwsError
from chalicelib.deadline import Deadline
from chalicelib.errors import BackendUnavailable, UnknownConnection
from chalicelib.model import Connection
from chalicelib.schema import CONNECTION_INDEX, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE

logger = logging.getLogger(__name__)

#: Pauses between GSI lookups that miss (the index is eventually consistent).
DEFAULT_LOOKUP_RETRY_DELAYS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
#: Found connections kept per container: a connection's item never changes while it
#: lives and ids are never reused, so a warm container skips the GSI Query for a
#: connection that already sent a message. Bounded in size and age.
DEFAULT_CACHE_SIZE = 10_000
DEFAULT_CACHE_SECONDS = 300.0


#: DynamoDB's BatchGetItem limit.
BATCH_GET_KEYS = 100
#: A pause between calls (a lookup's retry, unprocessed keys) is taken only if it leaves this much time.
MIN_CALL_SECONDS = 0.05


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

    def _call(
        self, operation: str, *, table_argument: bool = True, deadline: Deadline | None = None, **kwargs: Any
    ) -> Any:
        """The client's answer; None when the call's ``ConditionExpression`` did not hold."""
        if table_argument:
            kwargs["TableName"] = self._table
        try:
            return getattr(self._client, operation)(deadline=deadline, **kwargs)
        except AwsError as exc:
            if exc.code == "ConditionalCheckFailedException" and "ConditionExpression" in kwargs:
                return None
            logger.error("dynamodb call failed", extra={"operation": operation, "error": exc.code})
            raise BackendUnavailable("the connection registry is unavailable; try again") from exc

    @staticmethod
    def _time_for(pause: float, deadline: Deadline | None) -> bool:
        """Whether ``pause`` leaves time for another call before ``deadline``."""
        return deadline is None or deadline.remaining() - pause >= MIN_CALL_SECONDS

    def put(self, conn: Connection, *, deadline: Deadline | None = None) -> None:
        self._call("put_item", Item=to_item(conn), deadline=deadline)

    def delete(
        self,
        channel: str,
        connection_id: str,
        *,
        created_before: int | None = None,
        deadline: Deadline | None = None,
    ) -> bool:
        """Remove the item; with ``created_before``, only an item created before that time.

        False when the condition kept the item (a connection so new that it may still be in
        its handshake, for which the Management API answers 410 too).
        """
        self._forget(connection_id)
        if created_before is None:
            self._call("delete_item", Key=self._key(channel, connection_id), deadline=deadline)
            return True
        deleted = self._call(
            "delete_item",
            Key=self._key(channel, connection_id),
            ConditionExpression="attribute_not_exists(#c) OR #c < :before",
            ExpressionAttributeNames={"#c": "created_at"},
            ExpressionAttributeValues={":before": {"N": str(created_before)}},
            deadline=deadline,
        )
        return deleted is not None

    def _key(self, channel: str, connection_id: str) -> dict[str, Any]:
        return {PARTITION_KEY: {"S": channel}, SORT_KEY: {"S": connection_id}}

    def get(self, channel: str, connection_id: str, *, deadline: Deadline | None = None) -> Connection | None:
        """The live item of this connection in this channel (a consistent read), or None."""
        response = self._call(
            "get_item", Key=self._key(channel, connection_id), ConsistentRead=True, deadline=deadline
        )
        item = response.get("Item")
        if not item:
            return None
        conn = from_item(item)
        return conn if conn.ttl > int(self._clock()) else None

    def endpoints(
        self, channel: str, connection_ids: Sequence[str], *, deadline: Deadline | None = None
    ) -> dict[str, str | None]:
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
                    deadline=deadline,
                )
                for item in response.get("Responses", {}).get(self._table, []):
                    conn = from_item(item)
                    if conn.ttl > now:
                        found[conn.connection_id] = conn.endpoint
                keys = response.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", [])
                attempts += 1
                if keys and (
                    attempts >= len(self._delays) + 1
                    or not self._time_for(self._delays[attempts - 1], deadline)
                ):
                    raise BackendUnavailable("the connection registry is throttling; try again")
                if keys:
                    self._sleep(self._delays[attempts - 1])
        return found

    def update_token(self, conn: Connection, token: str, *, deadline: Deadline | None = None) -> Connection:
        """Replace the stored token of a live connection; the updated connection."""
        updated_item = self._call(
            "update_item",
            Key=self._key(conn.channel, conn.connection_id),
            UpdateExpression="SET #tok = :tok",
            ConditionExpression="attribute_exists(#id)",
            ExpressionAttributeNames={"#tok": "token", "#id": SORT_KEY},
            ExpressionAttributeValues={":tok": {"S": token}},
            deadline=deadline,
        )
        if updated_item is None:
            self._forget(conn.connection_id)
            raise UnknownConnection("this connection is not registered; reconnect")
        updated = replace(conn, token=token)
        self._remember(updated)
        return updated

    def find(
        self,
        connection_id: str,
        *,
        retry: bool = True,
        cached: bool = True,
        deadline: Deadline | None = None,
    ) -> Connection | None:
        """The live connection with this id: one GSI Query, retried briefly on a miss (time allowing).

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
            found = self._query_index(connection_id, deadline)
            if found is not None:
                self._remember(found)
                return found
            if attempt >= len(delays) or not self._time_for(delays[attempt], deadline):
                return None
            self._sleep(delays[attempt])
            attempt += 1

    def _query_index(self, connection_id: str, deadline: Deadline | None) -> Connection | None:
        now = int(self._clock())
        response = self._call(
            "query",
            IndexName=CONNECTION_INDEX,
            KeyConditionExpression="#c = :c",
            ExpressionAttributeNames={"#c": SORT_KEY},
            ExpressionAttributeValues={":c": {"S": connection_id}},
            deadline=deadline,
        )
        for item in response.get("Items", []):
            conn = from_item(item)
            if conn.ttl > now:
                return conn
        return None

    def channel_ids(
        self,
        channel: str,
        connection_type: str | None,
        *,
        page_size: int | None = None,
        deadline: Deadline | None = None,
    ) -> Iterator[str]:
        """Every live connection id in ``channel`` (optionally one type), following DynamoDB's pages.

        A page that cannot be read before ``deadline`` raises ``BackendUnavailable``
        (after the ids of the pages already read).
        """
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
            response = self._call("query", deadline=deadline, **kwargs)
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
