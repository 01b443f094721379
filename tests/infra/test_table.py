"""`make table STAGE=...` creates the stage's table from the schema, once (moto)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.schema import CONNECTION_INDEX
from infra import table


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client("dynamodb", region_name="us-east-1")


def test_the_table_name_is_the_stage_s_connections_table() -> None:
    assert table.stage_table_name("dev") == "ws-proxy-dev-websocket-connections"
    assert table.stage_table_name("prod") == "ws-proxy-prod-websocket-connections"
    with pytest.raises(SystemExit):
        table.stage_table_name("nope")


def test_make_table_creates_the_table_with_its_index_and_ttl_then_leaves_it(
    dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert table.main(["--stage", "dev"], client=dynamodb) == 0
    assert "created" in capsys.readouterr().out
    description = dynamodb.describe_table(TableName="ws-proxy-dev-websocket-connections")["Table"]
    assert [i["IndexName"] for i in description["GlobalSecondaryIndexes"]] == [CONNECTION_INDEX]
    ttl = dynamodb.describe_time_to_live(TableName="ws-proxy-dev-websocket-connections")
    assert ttl["TimeToLiveDescription"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"}

    assert table.main(["--stage", "dev"], client=dynamodb) == 0
    assert "already exists" in capsys.readouterr().out
    assert dynamodb.list_tables()["TableNames"] == ["ws-proxy-dev-websocket-connections"]
