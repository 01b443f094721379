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

Every attribute but the token is fixed for the item's life; ``auth`` replaces the
token, in whichever container it runs. So the per-container cache of found
connections holds everything but the token, and ``find`` reads a connection's token
with a consistent GetItem each time: a message forwards the latest token accepted,
never one another container has since replaced.

A socket has one item per channel it is in: its own (home) item, written on
``$connect``, and one per ``subscribe`` (docs/protocol.md, "One socket per user").
A subscription item carries ``home`` (the channel key of the socket's own item, which
alone holds the token), the socket's ``user_id``, ``endpoint`` and ``ttl``, and
``types``: the string set of connection types it is in that channel as. A home item
subscribed in its own channel as a second type gains ``types`` too (its own type
and the other). An item without ``types`` is in its channel as ``connection_type``.
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
from chalicelib.model import Connection, Member
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
#: DynamoDB's BatchWriteItem limit.
BATCH_WRITE_ITEMS = 25
#: A pause between calls (a lookup's retry, unprocessed keys) is taken only if it leaves this much time.
MIN_CALL_SECONDS = 0.05
#: A channel Query's filter for one connection type (``#ct``, ``#ty``, ``:ct``).
TYPE_FILTER = "(contains(#ty, :ct) OR (attribute_not_exists(#ty) AND #ct = :ct))"


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
            deadline=deadline,
        )
        if updated_item is None:
            self._forget(conn.connection_id)
            raise UnknownConnection("this connection is not registered; reconnect")
        return replace(conn, token=token)

    def find(
        self,
        connection_id: str,
        *,
        retry: bool = True,
        cached: bool = True,
        token: bool = True,
        deadline: Deadline | None = None,
    ) -> Connection | None:
        """The live connection with this id: one GSI Query, retried briefly on a miss (time allowing).

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
                return self._with_token(conn, deadline) if token and has_token else conn
        delays = self._delays if retry else ()
        attempt = 0
        while True:
            found = self._query_index(connection_id, deadline)
            if found is not None:
                self._remember(found)
                if found.token is None:
                    return found
                return self._with_token(found, deadline) if token else replace(found, token=None)
            if attempt >= len(delays) or not self._time_for(delays[attempt], deadline):
                return None
            self._sleep(delays[attempt])
            attempt += 1

    def _with_token(self, conn: Connection, deadline: Deadline | None) -> Connection | None:
        """``conn`` with the token its item holds now; None when the item is gone or expired."""
        response = self._call(
            "get_item",
            Key=self._key(conn.channel, conn.connection_id),
            ConsistentRead=True,
            ProjectionExpression="#tok, #t",
            ExpressionAttributeNames={"#tok": "token", "#t": TTL_ATTRIBUTE},
            deadline=deadline,
        )
        item = response.get("Item")
        if not item or int(float(item.get(TTL_ATTRIBUTE, {"N": "0"})["N"])) <= int(self._clock()):
            self._forget(conn.connection_id)
            return None
        stored = item.get("token")
        return replace(conn, token=stored["S"] if stored else None)

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
            if conn.ttl > now and not conn.subscription:  # the socket's own item, with its token
                return conn
        return None

    def count(self, channel: str, limit: int, *, deadline: Deadline | None = None) -> int:
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
            response = self._call("query", deadline=deadline, **kwargs)
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
            names.update({"#ct": "connection_type", "#ty": "types"})
            values[":ct"] = {"S": connection_type}
            condition += " AND " + TYPE_FILTER
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "#p = :p",
            "FilterExpression": condition,
            "ProjectionExpression": "#id",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if page_size:
            kwargs["Limit"] = page_size
        for item in self._pages(kwargs, deadline):
            yield item[SORT_KEY]["S"]

    def _pages(self, kwargs: dict[str, Any], deadline: Deadline | None) -> Iterator[dict[str, Any]]:
        """Every item a Query answers, following DynamoDB's pages (each read only with time left)."""
        while True:
            response = self._call("query", deadline=deadline, **kwargs)
            yield from response.get("Items", [])
            if not response.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def channel_members(
        self, channel: str, connection_type: str | None, *, deadline: Deadline | None = None
    ) -> list[Member]:
        """Connection id, user id and stored endpoint of every live connection in ``channel`` of
        that type: one strongly consistent Query."""
        names = {"#p": PARTITION_KEY, "#t": TTL_ATTRIBUTE, "#id": SORT_KEY, "#u": "user_id", "#e": "endpoint"}
        values: dict[str, Any] = {":p": {"S": channel}, ":now": {"N": str(int(self._clock()))}}
        condition = "#t > :now"
        if connection_type is not None:
            names.update({"#ct": "connection_type", "#ty": "types"})
            values[":ct"] = {"S": connection_type}
            condition += " AND " + TYPE_FILTER
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "#p = :p",
            "FilterExpression": condition,
            "ProjectionExpression": "#id, #u, #e",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            # a socket asking right after its subscribe must find itself
            "ConsistentRead": True,
        }
        return [
            Member(
                item[SORT_KEY]["S"],
                item["user_id"]["S"] if "user_id" in item else None,
                item["endpoint"]["S"] if "endpoint" in item else None,
            )
            for item in self._pages(kwargs, deadline)
        ]

    def connection_items(
        self, connection_id: str, *, live: bool = True, deadline: Deadline | None = None
    ) -> list[Connection]:
        """Every item of this connection (its own and its subscriptions): one Query on the index.

        Always asks DynamoDB; with ``live=False`` expired items are answered too.
        """
        now = int(self._clock())
        kwargs: dict[str, Any] = {
            "IndexName": CONNECTION_INDEX,
            "KeyConditionExpression": "#c = :c",
            "ExpressionAttributeNames": {"#c": SORT_KEY},
            "ExpressionAttributeValues": {":c": {"S": connection_id}},
        }
        items = [from_item(item) for item in self._pages(kwargs, deadline)]
        return [conn for conn in items if conn.ttl > now or not live]

    def subscribe(self, item: Connection, *, deadline: Deadline | None = None) -> None:
        """Put the connection in ``item.channel`` as each of ``item.types`` (added to any it is in).

        A subscription item (``item.home`` set) is created or extended, never over a home
        item; without ``home`` the socket's own item in that channel gains the types.
        """
        names: dict[str, str] = {"#ty": "types", "#id": SORT_KEY}
        values: dict[str, Any] = {":ty": {"SS": sorted(item.types)}}
        if item.home is None:
            added = self._call(
                "update_item",
                Key=self._key(item.channel, item.connection_id),
                UpdateExpression="ADD #ty :ty",
                ConditionExpression="attribute_exists(#id) AND attribute_not_exists(#h)",
                ExpressionAttributeNames={**names, "#h": "home"},
                ExpressionAttributeValues=values,
                deadline=deadline,
            )
            if added is None:
                raise UnknownConnection("this connection is not registered; reconnect")
            return
        sets = ["#ct = if_not_exists(#ct, :ct)", "#c = if_not_exists(#c, :c)", "#t = :t", "#h = :h"]
        names.update({"#ct": "connection_type", "#c": "created_at", "#t": TTL_ATTRIBUTE, "#h": "home"})
        values.update(
            {
                ":ct": {"S": item.connection_type},
                ":c": {"N": str(item.created_at)},
                ":t": {"N": str(item.ttl)},
                ":h": {"S": item.home},
            }
        )
        for attribute, value in (
            ("user_id", item.user_id),
            ("booking", item.booking_id),
            ("endpoint", item.endpoint),
        ):
            if value is not None:
                sets.append(f"#{attribute} = :{attribute}")
                names[f"#{attribute}"] = attribute
                values[f":{attribute}"] = {"S": value}
        written = self._call(
            "update_item",
            Key=self._key(item.channel, item.connection_id),
            UpdateExpression="SET " + ", ".join(sets) + " ADD #ty :ty",
            ConditionExpression="attribute_not_exists(#id) OR attribute_exists(#h)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            deadline=deadline,
        )
        if written is None:
            raise UnknownConnection("this connection's own item is in that channel; reconnect")

    def unsubscribe(
        self, channel: str, connection_id: str, connection_type: str, *, deadline: Deadline | None = None
    ) -> bool:
        """Take the connection out of ``channel`` as ``connection_type``; a subscription item left
        with no type goes. False when it was not in the channel as that type (nothing changes)."""
        key = self._key(channel, connection_id)
        answer = self._call(
            "update_item",
            Key=key,
            UpdateExpression="DELETE #ty :ty",
            ConditionExpression="attribute_exists(#id) AND contains(#ty, :one)",
            ExpressionAttributeNames={"#ty": "types", "#id": SORT_KEY},
            ExpressionAttributeValues={":ty": {"SS": [connection_type]}, ":one": {"S": connection_type}},
            ReturnValues="ALL_OLD",
            deadline=deadline,
        )
        if answer is None:
            return False
        old = from_item(answer.get("Attributes", {}))
        if old.subscription and not old.types - {connection_type}:
            # only if no subscribe has added a type meanwhile
            self._call(
                "delete_item",
                Key=key,
                ConditionExpression="attribute_not_exists(#ty)",
                ExpressionAttributeNames={"#ty": "types"},
                deadline=deadline,
            )
        return True

    def remove_connection(self, connection_id: str, *, deadline: Deadline | None = None) -> list[Connection]:
        """Delete every item of the connection (found on the index), in batches; the items removed.

        Unprocessed deletes are retried after the lookup's pauses, each only with time left.
        """
        self._forget(connection_id)
        items = self.connection_items(connection_id, live=False, deadline=deadline)
        requests = [{"DeleteRequest": {"Key": self._key(c.channel, c.connection_id)}} for c in items]
        for start in range(0, len(requests), BATCH_WRITE_ITEMS):
            batch = requests[start : start + BATCH_WRITE_ITEMS]
            attempts = 0
            while batch:
                response = self._call(
                    "batch_write_item",
                    RequestItems={self._table: batch},
                    table_argument=False,
                    deadline=deadline,
                )
                batch = response.get("UnprocessedItems", {}).get(self._table, [])
                attempts += 1
                if batch and (
                    attempts >= len(self._delays) + 1
                    or not self._time_for(self._delays[attempts - 1], deadline)
                ):
                    raise BackendUnavailable("the connection registry is throttling; try again")
                if batch:
                    self._sleep(self._delays[attempts - 1])
        return items


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
    if conn.home is not None:
        item["home"] = {"S": conn.home}
    if conn.types:
        item["types"] = {"SS": sorted(conn.types)}
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
        home=s("home"),
        types=frozenset(item["types"]["SS"]) if "types" in item else frozenset(),
    )
