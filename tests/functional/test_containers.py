"""Several warm Lambda containers over one connections table: what one writes, the others see.

API Gateway spreads a connection's frames over every warm ``$default`` container, each
with its own clients and its own cache of found connections. Here the app's clients
are one container and ``build_clients`` makes a second over the same moto table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent

from chalicelib.clients import Clients, build_clients
from chalicelib.deadline import Deadline
from chalicelib.message import MessageCase
from tests.harness import Stack
from tests.standins import Reply
from ws_proxy_testing import events

CHAT = {"type": "chat", "booking_id": "1", "token": "token-1"}


@pytest.fixture
def other(stack: Stack) -> Iterator[Clients]:
    """A second container's clients, built from the same environment as the app's."""
    clients = build_clients()
    yield clients
    clients.close()


def send_in(clients: Clients, cid: str, frame: dict[str, Any]) -> dict[str, Any]:
    """``$default`` in the container that has ``clients``."""
    event = events.message_event(cid, frame)
    return MessageCase(clients).handle(
        APIGatewayWebSocketEvent(event), Deadline.after(20), "ws-proxy-test-websocket_message"
    )


def forwarded_tokens(stack: Stack) -> list[str]:
    return [body.get("token") for path, body in stack.backend.requests if path.endswith("/message")]


def test_a_token_refreshed_in_one_container_is_forwarded_by_another_at_once(
    stack: Stack, other: Clients
) -> None:
    stack.backend.routes["/api/chat/ws/1/connect"] = Reply(200, {"user_id": "alice"})
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(200, {"type": "ack"})
    assert stack.connect("A1=", CHAT)["statusCode"] == 200
    send_in(other, "A1=", {"body": "before"})  # the other container now knows A1=
    stack.send("A1=", {"type": "auth", "token": "token-2", "id": "r"})
    assert stack.mgmt.frames("A1=")[-1] == {"type": "authenticated", "ref": "r"}
    send_in(other, "A1=", {"body": "after"})
    stack.send("A1=", {"body": "here too"})
    assert forwarded_tokens(stack) == ["token-1", "token-2", "token-2"]


def test_a_connection_removed_by_another_container_is_unknown_at_once(stack: Stack, other: Clients) -> None:
    stack.backend.routes["/api/chat/ws/1/connect"] = Reply(200, {"user_id": "alice"})
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(200, {"type": "ack"})
    assert stack.connect("A1=", CHAT)["statusCode"] == 200
    send_in(other, "A1=", {"body": "before"})
    stack.disconnect("A1=")
    stack.mgmt.open.add("A1=")  # to see the answer to a stray frame
    send_in(other, "A1=", {"body": "after", "id": "x"})
    assert stack.mgmt.frames("A1=")[-1]["code"] == "unknown_connection"
    assert forwarded_tokens(stack) == ["token-1"]
