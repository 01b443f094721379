"""A live connection and its item in the connections table (``chalicelib/schema.py``).

An item: ``booking_id`` (the partition key; it holds the channel key, e.g.
``booking#42``, see ``routes.channel_key``), ``connection_id`` (sort key),
``connection_type``, ``booking`` (the booking id, for chat and booking),
``user_id`` (what the backend answered on connect), ``token`` (only a token the
backend verified), ``endpoint`` (the Management API endpoint of the API that
accepted the connection), ``created_at`` and ``ttl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.routes import is_channel_key
from chalicelib.schema import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE


@dataclass(frozen=True)
class Connection:
    connection_id: str
    channel: str
    connection_type: str
    user_id: str | None = None
    token: str | None = None
    created_at: int = 0
    ttl: int = 0
    booking_id: str | None = None
    endpoint: str | None = None

    def __repr__(self) -> str:  # never show the token, even in a traceback or log
        return (
            f"Connection(connection_id={self.connection_id!r}, channel={self.channel!r}, "
            f"connection_type={self.connection_type!r}, user_id={self.user_id!r})"
        )

    @property
    def legacy(self) -> bool:
        """Written before channel keys had a kind: such a connection must reconnect."""
        return not is_channel_key(self.channel)


@dataclass(frozen=True)
class ChannelPage:
    connection_ids: list[str]
    #: Where the next page starts (DynamoDB's LastEvaluatedKey); None at the end.
    next_key: dict[str, Any] | None


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


def item_for(conn: Connection) -> dict[str, Any]:
    """The item ``put`` writes for ``conn`` (tests and benchmarks seed tables with it)."""
    return to_item(conn)
