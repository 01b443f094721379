"""``MAX_FEED_CONNECTIONS``: a cap on the feed's size, refused with 429 at the handshake.

docs/operations.md, "Settings" and "A public feed".
"""

from __future__ import annotations

import pytest

from tests.harness import Stack, chat_backend
from ws_proxy_testing.isolation import reset_clients

FEED = {"type": "feed"}


def capped(monkeypatch: pytest.MonkeyPatch, cap: int) -> None:
    monkeypatch.setenv("MAX_FEED_CONNECTIONS", str(cap))
    reset_clients()


def test_without_a_cap_the_feed_takes_any_number_and_connect_never_counts(
    stack: Stack, dynamodb_ops: list[str]
) -> None:
    for i in range(5):
        assert stack.connect(f"F{i}=", FEED) == {"statusCode": 200}
    assert dynamodb_ops == ["PutItem"] * 5
    assert len(stack.live_ids()) == 5


def test_a_full_feed_refuses_a_handshake_with_429_and_a_reason(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    capped(monkeypatch, 2)
    assert stack.connect("F1=", FEED) == {"statusCode": 200}
    assert stack.connect("F2=", FEED) == {"statusCode": 200}
    refused = stack.connect("F3=", FEED)
    assert refused == {
        "statusCode": 429,
        "body": "the feed has its maximum of 2 connections; try again later",
    }
    assert stack.live_ids() == {"F1=", "F2="}
    assert stack.backend.requests == []


def test_the_cap_counts_live_feed_connections_only(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    capped(monkeypatch, 2)
    stack.seed(["OLD1=", "OLD2="], connection_type="feed", booking=None, ttl_seconds=-10)  # expired
    chat_backend(stack.backend)
    assert stack.connect("C1=", {"booking_id": "1", "token": "t"})["statusCode"] == 200
    assert stack.connect("F1=", FEED) == {"statusCode": 200}
    assert stack.connect("F2=", FEED) == {"statusCode": 200}
    assert stack.connect("F3=", FEED)["statusCode"] == 429
    assert stack.connect("C2=", {"booking_id": "1", "token": "t"})["statusCode"] == 200  # other types: no cap


def test_a_feed_with_room_again_takes_a_new_connection(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    capped(monkeypatch, 1)
    assert stack.connect("F1=", FEED) == {"statusCode": 200}
    assert stack.connect("F2=", FEED)["statusCode"] == 429
    stack.disconnect("F1=")
    reset_clients()  # a container that has not just counted the feed full
    assert stack.connect("F3=", FEED) == {"statusCode": 200}
    assert stack.live_ids() == {"F3="}
