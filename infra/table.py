"""Create the connections table for a chalice stage, idempotently (``make table STAGE=dev``).

    python -m infra.table --stage dev [--table NAME]

The table name defaults to the stage's ``CONNECTIONS_TABLE`` in
.chalice/config.json, the name its functions use. The schema is
``chalicelib.schema.create_table_request`` (the one definition the Terraform
export and the local stack use too); ``ensure_table`` leaves an existing table
as it is and enables TTL on it if it is not yet. Region and credentials come
from the environment, as for any boto3 client (AWS_PROFILE, AWS_DEFAULT_REGION;
not AWS_REGION, which boto3 ignores). Without a region, or when AWS refuses or
cannot be reached, it exits 1 with one line on stderr (no traceback).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.schema import TTL_ATTRIBUTE, create_table_request
from infra import region as regions

ROOT = Path(__file__).resolve().parent.parent


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


def stage_table_name(stage: str, config_path: Path = ROOT / ".chalice" / "config.json") -> str:
    """The ``CONNECTIONS_TABLE`` the stage's functions are configured with."""
    config = json.loads(config_path.read_text())
    stages = config.get("stages", {})
    if stage not in stages:
        raise SystemExit(f"no stage {stage!r} in {config_path} (stages: {', '.join(sorted(stages))})")
    variables = {**config.get("environment_variables", {}), **stages[stage].get("environment_variables", {})}
    name = variables.get("CONNECTIONS_TABLE")
    if not name:
        raise SystemExit(f"stage {stage!r} sets no CONNECTIONS_TABLE in {config_path}")
    return str(name)


def one_line(exc: Exception) -> str:
    """A botocore error as one line, with AWS's error code."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{code}: {text}" if code and code not in text else text


def main(argv: list[str] | None = None, client: Any = None) -> int:
    parser = argparse.ArgumentParser(description="Create the connections table (idempotent).")
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--table", help="table name (default: the stage's CONNECTIONS_TABLE)")
    args = parser.parse_args(argv)
    name = args.table or stage_table_name(args.stage)
    if client is None:
        import boto3

        client = boto3.client("dynamodb", region_name=regions.require("make table"))
    region = client.meta.region_name
    try:
        created = ensure_table(client, name)
    except (BotoCoreError, ClientError) as exc:  # no credentials, access denied, unreachable: one line
        raise SystemExit(f"error: table {name} in {region}: {one_line(exc)}") from None
    print(f"table {name} in {region}: {'created' if created else 'already exists'}; TTL on 'ttl' enabled")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
