"""The connections table: one definition for the code, the local stack and Terraform.

docs/operations.md ("The connections table") describes every attribute and the items
of a socket. ``ATTRIBUTES`` maps them to ``model.Connection``'s fields; ``to_item`` and
``from_item`` convert with it; ``key``, ``channel_query`` and ``attribute_names`` write
the expressions that address them. ``create_table_request`` is the boto3 ``CreateTable``
request; the Terraform export and ``make table`` derive their table from it, and the
embedded local DynamoDB is created from it too (``infra.table.ensure_table``: tooling, not shipped).
"""

from __future__ import annotations

import re
from typing import Any

from chalicelib.model import Connection

PARTITION_KEY = "booking_id"
SORT_KEY = "connection_id"
CONNECTION_INDEX = "connection_id-index"
TTL_ATTRIBUTE = "ttl"

#: Each attribute of an item: its name, the ``Connection`` field it holds, its DynamoDB type.
ATTRIBUTES: tuple[tuple[str, str, str], ...] = (
    (PARTITION_KEY, "channel", "S"),
    (SORT_KEY, "connection_id", "S"),
    ("connection_type", "connection_type", "S"),
    ("created_at", "created_at", "N"),
    (TTL_ATTRIBUTE, "ttl", "N"),
    ("user_id", "user_id", "S"),
    ("token", "token", "S"),
    ("booking", "booking_id", "S"),
    ("endpoint", "endpoint", "S"),
    ("home", "home", "S"),
    ("types", "types", "SS"),
)


def to_item(conn: Connection) -> dict[str, Any]:
    """The item of ``conn``, without the attributes it has no value for (None, no types)."""
    values = ((name, kind, getattr(conn, field)) for name, field, kind in ATTRIBUTES)
    return {
        name: {kind: sorted(value) if kind == "SS" else str(value)}
        for name, kind, value in values
        if value is not None and value != frozenset()
    }


def from_item(item: dict[str, Any]) -> Connection:
    """The connection an item (or the projection of one) holds; absent attributes take defaults."""
    fields: dict[str, Any] = {"connection_id": "", "channel": "", "connection_type": ""}
    for name, field, kind in ATTRIBUTES:
        if name in item:
            value = item[name][kind]
            fields[field] = int(float(value)) if kind == "N" else frozenset(value) if kind == "SS" else value
    return Connection(**fields)


#: A channel Query's filter for one connection type: an item is in its channel as its
#: ``types``, else (an own item without them) as its ``connection_type``. A subscription item
#: without types (its last one just unsubscribed, its delete not done) is in it as nothing.
TYPE_FILTER = (
    "(contains(#types, :type)"
    " OR (attribute_not_exists(#types) AND attribute_not_exists(#home) AND #connection_type = :type))"
)


def key(channel: str, connection_id: str) -> dict[str, Any]:
    """The key of the connection's item in ``channel``."""
    return {PARTITION_KEY: {"S": channel}, SORT_KEY: {"S": connection_id}}


def channel_query(channel: str, connection_type: str | None, now: int, *projection: str) -> dict[str, Any]:
    """A Query of ``channel``'s items live at ``now`` (only those in it as ``connection_type``,
    unless None), answering the ``projection`` attributes."""
    values: dict[str, Any] = {":p": {"S": channel}, ":now": {"N": str(now)}}
    condition = f"#{TTL_ATTRIBUTE} > :now"
    if connection_type is not None:
        values[":type"] = {"S": connection_type}
        condition += f" AND {TYPE_FILTER}"
    query = {"KeyConditionExpression": f"#{PARTITION_KEY} = :p", "FilterExpression": condition}
    return query | {"ExpressionAttributeValues": values} | projection_of(*projection)


def projection_of(*names: str) -> dict[str, str]:
    """The ``ProjectionExpression`` of these attributes (none: every attribute)."""
    return {"ProjectionExpression": ", ".join(f"#{name}" for name in names)} if names else {}


def attribute_names(*expressions: str) -> dict[str, str]:
    """The ``ExpressionAttributeNames`` of expressions written, as here, with ``#`` and each
    attribute's own name (``#ttl``)."""
    return {f"#{name}": name for expression in expressions for name in re.findall(r"#(\w+)", expression)}


def create_table_request(table_name: str) -> dict[str, Any]:
    """The boto3 ``create_table`` keyword arguments for the connections table."""
    return {
        "TableName": table_name,
        "AttributeDefinitions": [
            {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": SORT_KEY, "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": CONNECTION_INDEX,
                "KeySchema": [{"AttributeName": SORT_KEY, "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
