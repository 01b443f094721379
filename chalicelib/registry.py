"""ConnectionRegistry: the connections table (``chalicelib/schema.py``, docs/operations.md).

Uses the thin DynamoDB client (``chalicelib.aws.DynamoDB``: botocore's low-level
names and shapes, thread-safe, shared by fan-out threads), every call through
``_call``. A ``$default`` or ``$disconnect`` finds its connection with one Query on
the ``connection_id-index`` GSI, never a Scan. Reads skip items whose ``ttl`` has
passed. AWS failures surface as ``BackendUnavailable`` (retryable).

Every method takes the caller's ``deadline``: each DynamoDB call gets the time left
(its attempts and their timeouts, ``chalicelib.aws``), a lookup's pauses and a
Query's next page start only with time left, and a call with none left fails as
``BackendUnavailable`` instead of running past the handler's deadline.

Every attribute of an item but the token is fixed for the item's life; ``auth``
replaces the token, in whichever container it runs, and only the socket's own (home)
item holds one. So the per-container cache of found connections holds everything but
the token, and ``find`` reads a connection's token with a consistent GetItem each
time: a message forwards the latest token accepted, never one another container has
since replaced.
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
from chalicelib.schema import (
    CONNECTION_INDEX,
    PARTITION_KEY,
    SORT_KEY,
    TTL_ATTRIBUTE,
    attribute_names,
    channel_query,
    from_item,
    key,
    projection_of,
    to_item,
)

logger = logging.getLogger(__name__)

#: Pauses between GSI lookups that miss (the index is eventually consistent), and
#: between the calls for what a batch call left unprocessed.
DEFAULT_LOOKUP_RETRY_DELAYS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
#: Found connections kept per container, without their token: an item's other attributes
#: never change while it lives and ids are never reused, so a warm container skips the
#: GSI Query for a connection that already sent a message. Bounded in size and age.
DEFAULT_CACHE_SIZE = 10_000
DEFAULT_CACHE_SECONDS = 300.0
#: A channel counted full is answered full this long without counting it again: a storm
#: of refused handshakes must not read the whole channel each.
FULL_CHANNEL_SECONDS = 5.0
#: DynamoDB's BatchGetItem and BatchWriteItem limits.
BATCH_GET_KEYS = 100
BATCH_WRITE_ITEMS = 25
#: A pause between calls (a lookup's retry, unprocessed keys) is taken only if it leaves this much time.
MIN_CALL_SECONDS = 0.05


#: What a subscribe never SETs on a subscription item: the key, ``types`` (ADDed) and a token.
NOT_SET = (PARTITION_KEY, SORT_KEY, "types", "token")


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
        # connection id -> (when cached, the connection with ``""`` for a token it has)
        self._cache: OrderedDict[str, tuple[float, Connection | None]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_seconds = cache_seconds
        self._cache_lock = threading.Lock()
        # channel -> when it was last counted full
        self._full: dict[str, float] = {}

    def _cached(self, connection_id: str) -> Connection | None:
        """The cached connection; its token is ``""`` when it has one (a token is never kept)."""
        now = self._clock()
        with self._cache_lock:
            when, conn = self._cache.pop(connection_id, (0.0, None))
            if conn is None or now - when > self._cache_seconds or conn.ttl <= now:
                return None
            self._cache[connection_id] = when, conn  # the most recently used, last
            return conn

    def _keep(self, connection_id: str, conn: Connection | None) -> None:
        """Cache ``conn`` without its token, or (None) forget the connection."""
        with self._cache_lock:
            self._cache.pop(connection_id, None)
            if conn is not None:
                self._cache[connection_id] = self._clock(), replace(conn, token=conn.token and "")
            while len(self._cache) > max(self._cache_size, 0):
                self._cache.popitem(last=False)

    def _call(self, operation: str, *, deadline: Deadline | None = None, **kwargs: Any) -> Any:
        """The client's answer; None when the call's ``ConditionExpression`` did not hold.

        The expressions' ``ExpressionAttributeNames`` are derived from them (``schema.attribute_names``).
        """
        if "RequestItems" not in kwargs:  # a batch call names its table in its requests
            kwargs["TableName"] = self._table
        if names := attribute_names(*(v for k, v in kwargs.items() if k.endswith("Expression"))):
            kwargs["ExpressionAttributeNames"] = names
        try:
            return self._client.call(operation, kwargs, deadline)
        except AwsError as exc:
            if exc.code == "ConditionalCheckFailedException" and "ConditionExpression" in kwargs:
                return None
            logger.error("dynamodb call failed", extra={"operation": operation, "error": exc.code})
            raise BackendUnavailable("the connection registry is unavailable; try again") from exc

    def _pauses(self, deadline: Deadline | None) -> Iterator[None]:
        """Before each call after the first: the next of the lookup's pauses, while one leaves
        ``MIN_CALL_SECONDS`` before ``deadline``; then the loop ends."""
        for pause in self._delays:
            if deadline is not None and deadline.remaining() - pause < MIN_CALL_SECONDS:
                return
            self._sleep(pause)
            yield

    def _pages(self, deadline: Deadline | None, query: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every page a Query answers, following DynamoDB's pages (each read only with time left).

        Reads ``query`` again for each page: a caller holding it may change it between pages.
        """
        while True:
            page = self._call("Query", deadline=deadline, **query)
            yield page
            if not page.get("LastEvaluatedKey"):
                return
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _items(self, deadline: Deadline | None, query: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for page in self._pages(deadline, query):
            yield from page.get("Items", [])

    def _batches(
        self, operation: str, requests: list[Any], deadline: Deadline | None, **shape: Any
    ) -> Iterator[Any]:
        """Every answer to ``operation`` (``BatchGetItem`` of keys with ``shape``, or
        ``BatchWriteItem``) over ``requests`` in DynamoDB's batches. What an answer leaves
        unprocessed is asked again after the lookup's pauses; still left: ``BackendUnavailable``."""
        get = operation == "BatchGetItem"
        size = BATCH_GET_KEYS if get else BATCH_WRITE_ITEMS
        for start in range(0, len(requests), size):
            batch = requests[start : start + size]
            pauses = self._pauses(deadline)
            while batch:
                request = {"Keys": batch, **shape} if get else batch
                response = self._call(operation, RequestItems={self._table: request}, deadline=deadline)
                yield response
                left = response.get("UnprocessedKeys" if get else "UnprocessedItems", {}).get(self._table)
                batch = left["Keys"] if get and left else left
                if batch and next(pauses, False) is False:
                    raise BackendUnavailable("the connection registry is throttling; try again")

    def put(self, conn: Connection, *, deadline: Deadline | None = None) -> None:
        self._call("PutItem", Item=to_item(conn), deadline=deadline)

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
        self._keep(connection_id, None)
        condition: dict[str, Any] = {}
        if created_before is not None:
            condition = {
                "ConditionExpression": "attribute_not_exists(#created_at) OR #created_at < :before",
                "ExpressionAttributeValues": {":before": {"N": str(created_before)}},
            }
        answer = self._call("DeleteItem", Key=key(channel, connection_id), deadline=deadline, **condition)
        return answer is not None

    def get(
        self, channel: str, connection_id: str, *projection: str, deadline: Deadline | None = None
    ) -> Connection | None:
        """The live item of this connection in this channel (a consistent read), or None.

        With ``projection``, only those attributes are read.
        """
        read = {"Key": key(channel, connection_id), "ConsistentRead": True} | projection_of(*projection)
        conn = from_item(self._call("GetItem", deadline=deadline, **read).get("Item") or {})
        return conn if conn.ttl > int(self._clock()) else None

    def endpoints(
        self, channel: str, connection_ids: Sequence[str], *, deadline: Deadline | None = None
    ) -> dict[str, str | None]:
        """For each live connection of ``channel`` among ``connection_ids``: its stored endpoint.

        Ids that are not (or no longer) in the channel are absent from the answer.
        """
        now = int(self._clock())
        keys = [key(channel, cid) for cid in dict.fromkeys(connection_ids)]
        shape: dict[str, Any] = projection_of(SORT_KEY, "endpoint", TTL_ATTRIBUTE)
        shape["ExpressionAttributeNames"] = attribute_names(shape["ProjectionExpression"])
        responses = self._batches("BatchGetItem", keys, deadline, **shape)
        items = (item for answer in responses for item in answer.get("Responses", {}).get(self._table, []))
        return {conn.connection_id: conn.endpoint for conn in map(from_item, items) if conn.ttl > now}

    def update_token(self, conn: Connection, token: str, *, deadline: Deadline | None = None) -> Connection:
        """Replace the stored token of a live connection; the updated connection.

        Only an item that has a token gets a new one: whether a connection has a token
        is fixed for its life, which is what lets ``find`` skip the read for one without.
        """
        self._update(
            conn.channel,
            conn.connection_id,
            "this connection is not registered; reconnect",
            UpdateExpression="SET #token = :token",
            ConditionExpression="attribute_exists(#token)",
            ExpressionAttributeValues={":token": {"S": token}},
            deadline=deadline,
        )
        return replace(conn, token=token)

    def find(
        self, connection_id: str, *, token: bool = True, deadline: Deadline | None = None
    ) -> Connection | None:
        """The live connection with this id: one GSI Query, retried briefly on a miss (time allowing).

        The answer is the socket's own item (a subscription item has no token). A connection
        found before in this container is answered from the cache. A connection with a token
        gets the one stored now (a consistent GetItem: the cache and the eventually consistent
        index may hold one an ``auth`` has replaced since); ``token=False`` skips that read
        and answers no token.
        """
        conn = self._cached(connection_id)
        if conn is None:
            pauses = self._pauses(deadline)
            while (conn := self._own_item(connection_id, deadline)) is None:
                if next(pauses, False) is False:
                    return None
            self._keep(connection_id, conn)
        if not token or conn.token is None:
            return replace(conn, token=None)
        stored = self.get(conn.channel, connection_id, "token", TTL_ATTRIBUTE, deadline=deadline)
        if stored is None:  # gone or expired since
            self._keep(connection_id, None)
            return None
        return replace(conn, token=stored.token)

    def _own_item(self, connection_id: str, deadline: Deadline | None) -> Connection | None:
        items = self.connection_items(connection_id, deadline=deadline)
        return next((conn for conn in items if not conn.subscription), None)

    def count(self, channel: str, limit: int, *, deadline: Deadline | None = None) -> int:
        """Live connections of ``channel``, counted up to ``limit`` (at most ``limit`` items read).

        A channel counted full (``limit`` or more) is answered ``limit`` for
        ``FULL_CHANNEL_SECONDS`` without another Query.
        """
        now = self._clock()
        counted_full = self._full.get(channel)
        if limit <= 0 or (counted_full is not None and now - counted_full < FULL_CHANNEL_SECONDS):
            return limit
        counted = 0
        query = channel_query(channel, None, int(now)) | {"Select": "COUNT", "Limit": limit}
        for page in self._pages(deadline, query):
            counted += int(page.get("Count", 0))
            if counted >= limit:
                self._full[channel] = now
                return limit
            query["Limit"] = limit - counted  # items read, before the filter: no more than needed
        self._full.pop(channel, None)
        return counted

    def channel_ids(
        self, channel: str, connection_type: str | None, *, deadline: Deadline | None = None
    ) -> Iterator[str]:
        """Every live connection id in ``channel`` (optionally one type), following DynamoDB's pages.

        A page that cannot be read before ``deadline`` raises ``BackendUnavailable``
        (after the ids of the pages already read).
        """
        for item in self._items(
            deadline, channel_query(channel, connection_type, int(self._clock()), SORT_KEY)
        ):
            yield item[SORT_KEY]["S"]

    def channel_members(
        self, channel: str, connection_type: str | None, *, deadline: Deadline | None = None
    ) -> list[Member]:
        """Connection id, user id and stored endpoint of every live connection in ``channel`` of
        that type: one strongly consistent Query (a socket asking right after its subscribe finds itself)."""
        query = channel_query(channel, connection_type, int(self._clock()), SORT_KEY, "user_id", "endpoint")
        items = map(from_item, self._items(deadline, query | {"ConsistentRead": True}))
        return [Member(conn.connection_id, conn.user_id, conn.endpoint) for conn in items]

    def connection_items(
        self, connection_id: str, *, live: bool = True, deadline: Deadline | None = None
    ) -> list[Connection]:
        """Every item of this connection (its own and its subscriptions): one Query on the index.

        Always asks DynamoDB; with ``live=False`` expired items are answered too.
        """
        now = int(self._clock())
        index = {"IndexName": CONNECTION_INDEX, "KeyConditionExpression": f"#{SORT_KEY} = :id"}
        items = self._items(deadline, index | {"ExpressionAttributeValues": {":id": {"S": connection_id}}})
        return [conn for conn in map(from_item, items) if conn.ttl > now or not live]

    def subscribe(self, item: Connection, *, deadline: Deadline | None = None) -> None:
        """Put the connection in ``item.channel`` as each of ``item.types`` (added to any it is in).

        A subscription item (``item.home`` set) is created or extended, never over a home
        item; without ``home`` the socket's own item in that channel gains the types.
        """
        values: dict[str, Any] = {":types": {"SS": sorted(item.types)}}
        if item.home is None:
            update = "ADD #types :types"
            condition = f"attribute_exists(#{SORT_KEY}) AND attribute_not_exists(#home)"
            refused = "this connection is not registered; reconnect"
        else:
            stored = {n: v for n, v in to_item(item).items() if n not in NOT_SET}
            values |= {f":{name}": value for name, value in stored.items()}
            # the first type subscribed and its time stay; the rest is the latest subscribe's (never a token)
            first = ("connection_type", "created_at")
            sets = [f"#{n} = if_not_exists(#{n}, :{n})" if n in first else f"#{n} = :{n}" for n in stored]
            update = "SET " + ", ".join(sets) + " ADD #types :types"
            condition = f"attribute_not_exists(#{SORT_KEY}) OR attribute_exists(#home)"
            refused = "this connection's own item is in that channel; reconnect"
        self._update(
            item.channel,
            item.connection_id,
            refused,
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
            deadline=deadline,
        )

    def _update(
        self, channel: str, connection_id: str, refused: str, *, deadline: Deadline | None, **request: Any
    ) -> None:
        """A conditional ``UpdateItem`` of the item; ``UnknownConnection(refused)`` (and the
        connection forgotten) when the condition does not hold."""
        if self._call("UpdateItem", Key=key(channel, connection_id), deadline=deadline, **request) is None:
            self._keep(connection_id, None)
            raise UnknownConnection(refused)

    def unsubscribe(
        self, channel: str, connection_id: str, connection_type: str, *, deadline: Deadline | None = None
    ) -> bool:
        """Take the connection out of ``channel`` as ``connection_type``; a subscription item left
        with no type goes. False when it was not in the channel as that type (nothing changes)."""
        answer = self._call(
            "UpdateItem",
            Key=key(channel, connection_id),
            UpdateExpression="DELETE #types :types",
            ConditionExpression=f"attribute_exists(#{SORT_KEY}) AND contains(#types, :type)",
            ExpressionAttributeValues={":types": {"SS": [connection_type]}, ":type": {"S": connection_type}},
            ReturnValues="ALL_OLD",
            deadline=deadline,
        )
        if answer is None:
            return False
        old = from_item(answer.get("Attributes", {}))
        if old.subscription and not old.types - {connection_type}:  # unless a subscribe added a type since
            gone = "attribute_not_exists(#types)"
            self._call(
                "DeleteItem", Key=key(channel, connection_id), ConditionExpression=gone, deadline=deadline
            )
        return True

    def remove_connection(self, connection_id: str, *, deadline: Deadline | None = None) -> list[Connection]:
        """Delete every item of the connection (found on the index), in batches; the items removed.

        Unprocessed deletes are retried after the lookup's pauses, each only with time left.
        """
        self._keep(connection_id, None)
        items = self.connection_items(connection_id, live=False, deadline=deadline)
        deletes = [{"DeleteRequest": {"Key": key(c.channel, c.connection_id)}} for c in items]
        list(self._batches("BatchWriteItem", deletes, deadline))  # every batch, each answer unread
        return items
