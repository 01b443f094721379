"""$disconnect: find the connection's items, delete them in batches; unknown is fine."""

from __future__ import annotations

import pytest

from tests.harness import Stack, chat_backend, fresh_clients


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


def test_disconnect_with_dynamodb_down_still_answers_200(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setenv("CONNECTIONS_TABLE", "missing-table")
    fresh_clients()
    assert stack.disconnect("A1=") == {"statusCode": 200}


def test_disconnect_of_a_notification_connection_finds_its_user_channel(stack: Stack) -> None:
    from tests.standins import Reply

    stack.backend.routes["/api/notifications/ws/connect"] = Reply(200, {"user_id": 5})
    stack.connect("N1=", {"type": "notification", "token": "t"})
    stack.disconnect("N1=")
    assert stack.items() == []
