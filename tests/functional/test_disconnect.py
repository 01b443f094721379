"""$disconnect: find the connection's items, delete them in batches; unknown is fine."""

from __future__ import annotations

import time

import pytest

from tests.harness import FAST_LOOKUP_RETRIES, Stack, chat_backend
from ws_proxy_testing import events
from ws_proxy_testing.isolation import reset_clients


def test_disconnect_removes_only_that_connection(stack: Stack, dynamodb_ops: list[str]) -> None:
    chat_backend(stack.backend)
    stack.connect("A1=", {"booking_id": "1", "token": "t"})
    stack.connect("B1=", {"booking_id": "1", "token": "t"})
    dynamodb_ops.clear()
    assert stack.disconnect("A1=") == {"statusCode": 200}
    assert stack.live_ids() == {"B1="}
    assert dynamodb_ops == ["Query", "BatchWriteItem"]  # one batch for every item of the connection


def test_unknown_connection_disconnects_quietly(stack: Stack, dynamodb_ops: list[str]) -> None:
    assert stack.disconnect("Z9=") == {"statusCode": 200}
    assert "DeleteItem" not in dynamodb_ops
    assert stack.backend.requests == []
    # just connected: the index may not show it yet, so it is asked again after each pause
    assert dynamodb_ops == ["Query"] * (2 + len(FAST_LOOKUP_RETRIES))


def test_an_unknown_connection_of_an_hour_ago_is_looked_up_once(
    stack: Stack, dynamodb_ops: list[str]
) -> None:
    """Its items are gone (a post answered 410, or TTL): no index lag to wait for."""
    event = events.disconnect_event("Z9=")
    event["requestContext"]["connectedAt"] = int((time.time() - 3600) * 1000)
    assert stack.invoke("disconnect", event) == {"statusCode": 200}
    assert dynamodb_ops == ["Query"]


def test_disconnect_with_dynamodb_down_still_answers_200(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setenv("CONNECTIONS_TABLE", "missing-table")
    reset_clients()
    assert stack.disconnect("A1=") == {"statusCode": 200}


def test_disconnect_of_a_notification_connection_finds_its_user_channel(stack: Stack) -> None:
    from tests.standins import Reply

    stack.backend.routes["/api/notifications/ws/connect"] = Reply(200, {"user_id": 5})
    stack.connect("N1=", {"type": "notification", "token": "t"})
    stack.disconnect("N1=")
    assert stack.items() == []
