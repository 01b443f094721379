"""The connections table: one definition for the code, the local stack and Terraform.

docs/operations.md describes every attribute. ``create_table_request`` is the boto3
``CreateTable`` request; the Terraform export and ``make table`` derive their
table from it, and the embedded local DynamoDB is created from it too.
"""

from __future__ import annotations

from typing import Any

PARTITION_KEY = "booking_id"
SORT_KEY = "connection_id"
CONNECTION_INDEX = "connection_id-index"
TTL_ATTRIBUTE = "ttl"


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


def ensure_table(client: Any, table_name: str) -> bool:
    """Create the table (and enable TTL) unless it exists. True when created.

    Idempotent: an existing table is left as it is, except that TTL is
    enabled on it if it is not yet.
    """
    created = False
    try:
        client.describe_table(TableName=table_name)
    except client.exceptions.ResourceNotFoundException:
        client.create_table(**create_table_request(table_name))
        client.get_waiter("table_exists").wait(TableName=table_name)
        created = True
    ttl = client.describe_time_to_live(TableName=table_name)
    status = ttl.get("TimeToLiveDescription", {}).get("TimeToLiveStatus")
    if status not in ("ENABLED", "ENABLING"):
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )
    return created
