"""Fixtures over tests/harness.py: moto DynamoDB, the app on loopback stand-ins, a record of its calls."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.harness import Stack, open_stack, start_moto
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
def dynamodb_ops(stack: Stack) -> Iterator[list[str]]:
    """Every DynamoDB operation the app's clients make (registered before they exist)."""
    calls: list[str] = []
    session = boto3.DEFAULT_SESSION or boto3.setup_default_session() or boto3.DEFAULT_SESSION
    assert session is not None

    def record(model: Any, **kwargs: Any) -> None:
        calls.append(model.name)

    session.events.register("before-call.dynamodb", record)
    reset_clients()
    yield calls
    session.events.unregister("before-call.dynamodb", record)
