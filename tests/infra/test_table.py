"""`make table STAGE=...` creates the stage's table from the schema, once (moto); without a
region, credentials or AWS, it stops with one line (run offline: tests/infra/cli.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.schema import CONNECTION_INDEX
from infra import table
from tests.infra.cli import make, module, offline_env, refused_port


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


# -- the region, and AWS's errors, as one line ---------------------------------------------


def test_make_table_without_a_region_stops_with_one_line_naming_aws_default_region(tmp_path: Path) -> None:
    with refused_port() as port:
        result = make("table", offline_env(tmp_path, port, AWS_REGION="eu-west-1"))
    assert result.code != 0
    assert "Traceback" not in result.err
    assert result.own_lines == [
        (
            "error: no AWS region for make table: AWS_REGION=eu-west-1 is set, but boto3 and chalice read "
            "AWS_DEFAULT_REGION (or the region of AWS_PROFILE's config): "
            "e.g. AWS_DEFAULT_REGION=eu-west-1 make table"
        )
    ]


def test_the_table_command_without_a_region_exits_1_with_one_line(tmp_path: Path) -> None:
    with refused_port() as port:
        result = module("infra.table", offline_env(tmp_path, port), "--stage", "prod")
    assert result.code == 1
    assert result.out == ""
    assert len(result.err.splitlines()) == 1
    assert result.err.startswith(
        "error: no AWS region for make table: boto3 and chalice read AWS_DEFAULT_REGION "
    )


def test_make_table_uses_the_profile_s_region_not_the_makefile_s_stand_in(tmp_path: Path) -> None:
    """With a region in the AWS config file and none in the environment, that region is used
    (here AWS is a refused loopback port, so the one line says it could not connect)."""
    (tmp_path / "config").write_text("[profile ops]\nregion = eu-north-1\n")
    with refused_port() as port:
        env = offline_env(
            tmp_path, port, AWS_CONFIG_FILE=str(tmp_path / "config"), AWS_PROFILE="ops",
            AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        )  # fmt: skip
        result = make("table", env, "STAGE=prod")
    assert result.code != 0
    assert "Traceback" not in result.err
    assert result.own_lines == [
        (
            "error: table ws-proxy-prod-websocket-connections in eu-north-1: "
            f'Could not connect to the endpoint URL: "http://127.0.0.1:{port}/"'
        )
    ]


def test_make_table_without_credentials_says_so_in_one_line(tmp_path: Path) -> None:
    with refused_port() as port:
        result = make("table", offline_env(tmp_path, port, AWS_DEFAULT_REGION="eu-west-1"))
    assert "Traceback" not in result.err
    assert result.own_lines == [
        "error: table ws-proxy-dev-websocket-connections in eu-west-1: Unable to locate credentials"
    ]


def test_an_unknown_profile_is_one_line_too(tmp_path: Path) -> None:
    with refused_port() as port:
        result = make("table", offline_env(tmp_path, port, AWS_PROFILE="nope"))
    assert "Traceback" not in result.err
    assert result.own_lines == ["error: AWS_PROFILE: The config profile (nope) could not be found"]
