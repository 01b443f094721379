"""Lookup cost: DynamoDB items read to find a ``$default``'s connection.

The table holds one target connection and 100, 10,000 or 100,000 others
(moto in-process, ``mock_aws``; items written with ``BatchWriteItem``). Ours is
``ConnectionRegistry.find``: one Query on the ``connection_id-index`` GSI (and a
GetItem of the connection's token, which it reads at every lookup). The
baseline is what the replaced proxy did: a Scan with a FilterExpression on
``connection_id``, following ``LastEvaluatedKey``.

Items are counted from the responses (``ScannedCount``, through a botocore
``after-call`` hook), never timed: moto answers a GSI Query by walking the
whole table, so its timings say nothing about DynamoDB's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from bench.part import Target, part_main
from bench.servers import use_dummy_aws_env

TABLE = "bench-connections"
OTHERS = (100, 10_000, 100_000)
#: A JWT-sized token, so items (and therefore Scan pages) have a realistic size.
TOKEN = "eyJhbGciOiJIUzI1NiJ9." + "x" * 280
TARGET = "TARGETconnQ="


class ReadCounter:
    """Sums ``ScannedCount`` of Query/Scan (and one per GetItem item) and counts those calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.scanned = 0

    def reset(self) -> None:
        self.calls = self.scanned = 0

    def __call__(self, parsed: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if parsed is not None and "ScannedCount" in parsed:
            self.calls += 1
            self.scanned += int(parsed["ScannedCount"])
        elif parsed is not None and "Item" in parsed:  # GetItem: the token read fresh
            self.calls += 1
            self.scanned += 1


def _item(i: int, now: int) -> dict[str, Any]:
    return {
        "booking_id": {"S": f"b{i // 4:07d}"},  # four connections per booking
        "connection_id": {"S": f"c{i:011d}Q="},
        "connection_type": {"S": "chat"},
        "user_id": {"S": f"user_{i}"},
        "token": {"S": TOKEN},
        "created_at": {"N": str(now)},
        "ttl": {"N": str(now + 86400)},
    }


def _fill(client: Any, start: int, stop: int, now: int) -> None:
    for first in range(start, stop, 25):
        batch = [{"PutRequest": {"Item": _item(i, now)}} for i in range(first, min(first + 25, stop))]
        request: dict[str, Any] = {TABLE: batch}
        for _ in range(10):  # bounded: moto does not throttle, DynamoDB might
            unprocessed = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
            if not unprocessed:
                break
            request = unprocessed
        else:
            raise RuntimeError("BatchWriteItem kept leaving items unprocessed")


def scan_for(client: Any, connection_id: str, max_pages: int = 10_000) -> dict[str, Any] | None:
    """The replaced proxy's lookup: Scan with a filter, every page."""
    kwargs: dict[str, Any] = {
        "TableName": TABLE,
        "FilterExpression": "connection_id = :c",
        "ExpressionAttributeValues": {":c": {"S": connection_id}},
    }
    found = None
    for _ in range(max_pages):
        response = client.scan(**kwargs)
        if response.get("Items") and found is None:
            found = response["Items"][0]
        key = response.get("LastEvaluatedKey")
        if not key:
            return found
        kwargs["ExclusiveStartKey"] = key
    raise RuntimeError("Scan did not finish within its page bound")


class InProcess:
    """The registry's client interface (``call``: an operation, its parameters, a deadline) on boto3."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def call(self, operation: str, params: dict[str, Any], deadline: Any = None) -> Any:
        from botocore import xform_name

        return getattr(self._client, xform_name(operation))(**params)


def run(others: Sequence[int] = OTHERS, time_budget_s: float = 150.0) -> dict[str, Any]:
    use_dummy_aws_env()
    import boto3
    from moto import mock_aws

    from chalicelib.model import Connection
    from chalicelib.registry import ConnectionRegistry
    from chalicelib.schema import create_table_request

    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    skipped: list[int] = []
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**create_table_request(TABLE))
        counter = ReadCounter()
        client.meta.events.register("after-call.dynamodb.Query", counter)
        client.meta.events.register("after-call.dynamodb.Scan", counter)
        client.meta.events.register("after-call.dynamodb.GetItem", counter)
        # moto in this process (no HTTP): the registry's calls go to the boto3 client, whose
        # answers are counted; only what DynamoDB reads is measured here, not the client
        registry = ConnectionRegistry(InProcess(client), TABLE, lookup_retry_delays=())
        now = int(time.time())
        registry.put(Connection(TARGET, "b-target", "chat", "user_t", TOKEN, now, now + 86400))
        filled = 0
        for n in others:
            if time.monotonic() - started > time_budget_s:
                skipped.append(n)
                continue
            fill_started = time.monotonic()
            _fill(client, filled, n, now)
            filled = n
            fill_s = time.monotonic() - fill_started

            counter.reset()
            # the first lookup of a connection in a container (a new one's registry): the DynamoDB cost
            registry = ConnectionRegistry(InProcess(client), TABLE, lookup_retry_delays=())
            found = registry.find(TARGET)
            if found is None or found.connection_id != TARGET:
                raise RuntimeError("ConnectionRegistry.find missed the target connection")
            ours = {"items": counter.scanned, "calls": counter.calls}
            counter.reset()
            registry.find(TARGET)  # the same connection's next message in a warm container
            warm = {"items": counter.scanned, "calls": counter.calls}

            counter.reset()
            item = scan_for(client, TARGET)
            if item is None:
                raise RuntimeError("the Scan baseline missed the target connection")
            baseline = {"items": counter.scanned, "calls": counter.calls}
            rows.append(
                {
                    "others": n,
                    "table_items": n + 1,
                    "ours": ours,
                    "warm": warm,
                    "baseline": baseline,
                    "ratio": baseline["items"] / max(ours["items"], 1),
                    "fill_s": round(fill_s, 1),
                }
            )
    return {
        "rows": rows,
        "skipped": skipped,
        "item_bytes_approx": len(json.dumps(_item(0, 0))),
        "seconds": round(time.monotonic() - started, 1),
    }


def lines(res: dict[str, Any]) -> list[str]:
    lines = [
        "Lookup: DynamoDB items read (sum of ScannedCount) to find one $default's connection",
        f"{'others':>8}  {'ours (Query+GetItem)':>20}  {'baseline (Scan+filter)':>24}  {'ratio':>9}",
    ]
    for row in res["rows"]:
        lines.append(
            f"{row['others']:>8,}  {row['ours']['items']:>6} in {row['ours']['calls']} calls  "
            f"{row['baseline']['items']:>10,} in {row['baseline']['calls']:>2} calls    "
            f"{row['ratio']:>8,.0f}x"
        )
    warm = sorted({row["warm"]["items"] for row in res["rows"] if "warm" in row})
    if warm:
        lines.append(
            "the same connection's next message in a warm container (registry cache, token read): "
            f"{'/'.join(map(str, warm))} item(s)"
        )
    if res["skipped"]:
        lines.append(f"not measured (time budget): {res['skipped']}")
    return lines


def targets(res: dict[str, Any]) -> list[Target]:
    counts = {row["ours"]["items"] for row in res["rows"]}
    return [
        Target(
            "lookup constant, 2 items (the index's and the token's)",
            counts == {2},
            "ours read {} item(s) at every size; the Scan read {}".format(
                "/".join(str(c) for c in sorted(counts)),
                ", ".join(f"{row['baseline']['items']:,}" for row in res["rows"]),
            ),
        )
    ]


NOTE = (
    "- **Lookup cost**: moto in-process (`mock_aws`), table from `chalicelib.schema`, items of about "
    "500 bytes (a JWT-sized token) written with `BatchWriteItem`; items read = sum of `ScannedCount` "
    "over every Query/Scan response, and one per GetItem item (a botocore `after-call` hook). Ours: "
    "`ConnectionRegistry.find` (no retries, a new registry each time: the first lookup of a connection in a "
    "container, the index Query and the token's GetItem; the line below the table shows the next "
    "one, the registry's cache and the token's GetItem). "
    "Baseline: Scan with `FilterExpression` on `connection_id`, following "
    "`LastEvaluatedKey` (1 MB pages). Not timed: moto walks the whole table for a GSI Query."
)

if __name__ == "__main__":
    part_main(__name__)
