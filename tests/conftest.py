"""Fixtures over tests/harness.py: moto DynamoDB, the app on loopback stand-ins, a record of its calls."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.harness import Stack, open_stack, start_moto
from tests.standins import DynamoDbRecorder
from ws_proxy_testing.isolation import reset_clients

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with start_moto() as url:
        yield url


@pytest.fixture
def stack(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with open_stack(moto_endpoint, monkeypatch) as opened:
        yield opened


@pytest.fixture
def dynamodb_recorder(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDbRecorder]:
    """The app's DynamoDB calls go through a recording hop in front of moto (from the next event)."""
    recorder = DynamoDbRecorder(os.environ["AWS_ENDPOINT_URL_DYNAMODB"]).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", recorder.url)
    reset_clients()
    yield recorder
    reset_clients()
    recorder.stop()


@pytest.fixture
def dynamodb_ops(dynamodb_recorder: DynamoDbRecorder) -> list[str]:
    """Every DynamoDB operation the app's clients make, in order (the test may clear it)."""
    return dynamodb_recorder.operations
