"""The deferred delivery: initial payloads arrive in order, after the handshake."""

from __future__ import annotations

import base64
import logging
import random
import zlib
from typing import Any

import pytest

from chalicelib import wire
from chalicelib.internal_events import pack_frames
from tests.harness import Stack, chat_backend

CHAT = {"type": "chat", "booking_id": "1", "token": "tok"}
#: What every frame from booking 1's channel carries.
TAG = {"booking_id": "1", "connection_type": "chat"}


def test_history_then_receipt_arrive_after_the_handshake_completes(stack: Stack) -> None:
    chat_backend(stack.backend)
    assert stack.connect("D1=", CHAT, establish=False)["statusCode"] == 200
    stack.mgmt.pending["D1="] = 3  # API Gateway still completing the handshake: 410 three times
    (result,) = stack.run_deliveries()
    assert result == {"delivered": 2, "frames": 2, "outcome": "delivered"}
    frames = stack.mgmt.frames("D1=")
    assert [f["type"] for f in frames] == ["history", "receipt"]
    assert frames[0] == {
        "type": "history",
        "thread": {"id": 7},
        "messages": [{"id": 1, "body": "hi"}],
        **TAG,
    }
    assert stack.mgmt.posts_to("D1=") == 5  # growing pauses between the 410s: test_use_cases.py


def test_connect_answer_without_payloads_schedules_nothing(stack: Stack) -> None:
    chat_backend(stack.backend, user_id="u1")
    stack.connect("D1=", CHAT)
    assert stack.lambdas.invocations == []


def test_large_history_is_delivered_as_ordered_parts_each_within_the_limit(stack: Stack) -> None:
    messages = [{"id": i, "body": "é" * 700} for i in range(600)]
    chat_backend(
        stack.backend,
        initial={"type": "history", "messages": messages},
        receipt={"type": "receipt", "last_read": 599},
    )
    stack.connect("D1=", CHAT)
    stack.run_deliveries()
    frames = stack.mgmt.frames("D1=")
    parts, receipt = frames[:-1], frames[-1]
    assert len(parts) >= 6
    assert [p["part"] for p in parts] == list(range(1, len(parts) + 1))
    assert all(p["parts"] == len(parts) for p in parts)
    assert [m for p in parts for m in p["messages"]] == messages
    assert receipt == {"type": "receipt", "last_read": 599, **TAG}
    assert all(len(b) <= wire.MAX_MESSAGE_BYTES for b in stack.mgmt.received["D1="])


def test_oversize_payload_that_cannot_be_split_becomes_an_error_frame(stack: Stack) -> None:
    chat_backend(
        stack.backend, initial={"type": "thread", "blob": "z" * (200 * 1024)}, receipt={"type": "receipt"}
    )
    stack.connect("D1=", CHAT)
    stack.run_deliveries()
    first, second = stack.mgmt.frames("D1=")
    assert first["type"] == "error"
    assert first["code"] == "too_large"
    assert second == {"type": "receipt", **TAG}


def test_an_initial_payload_too_large_even_compressed_is_told_too_large(stack: Stack) -> None:
    # 300 KB of random text: split into frames of 128 KB it still does not compress below
    # Lambda's asynchronous payload limit
    rng = random.Random(7)
    messages = [{"id": i, "body": base64.b64encode(rng.randbytes(750)).decode()} for i in range(300)]
    history = {"type": "history", "messages": messages}
    chat_backend(stack.backend, initial=history, receipt={"type": "receipt"})
    assert stack.connect("D1=", CHAT)["statusCode"] == 200
    (result,) = stack.run_deliveries()
    assert result == {"delivered": 1, "frames": 1, "outcome": "delivered"}
    assert stack.mgmt.frames("D1=") == [
        {
            "type": "error",
            "code": "too_large",
            "message": "the initial payload is too large to deliver; reload in smaller pages",
            "retryable": False,
        }
    ]


def test_connection_that_never_opens_is_given_up_and_its_item_removed(stack: Stack) -> None:

    chat_backend(stack.backend)
    stack.connect("D1=", CHAT, establish=False)  # the client left before the handshake ended
    # pauses of 0.4 s in all (DELIVER_RETRY_SECONDS in tests/harness.py) instead of Lambda's 5 s
    (payload,) = stack.lambdas.take("-deliver")
    result = stack.invoke("deliver", payload)
    assert result["outcome"] == "gone"
    assert result["delivered"] == 0
    assert stack.items() == []
    assert stack.mgmt.posts_to("D1=") == 4  # after pauses of 0.05, 0.1 and 0.2; 0.4 more would pass 0.4 s


def test_failed_post_stops_the_sequence_and_tells_the_client(stack: Stack) -> None:
    chat_backend(stack.backend)
    stack.connect("D1=", CHAT)
    stack.mgmt.fail.add("D1=")
    (result,) = stack.run_deliveries()
    assert result["outcome"] == "failed"
    assert result["delivered"] == 0
    assert stack.mgmt.frames("D1=") == []  # 500 for everything: nothing could be sent


def test_malformed_delivery_events_answer_an_error(stack: Stack) -> None:
    bad: list[Any] = [
        {},
        {"connection_id": "x"},
        {"connection_id": "x", "channel": "1", "endpoint": "e", "frames": "not-base64!"},
        # a frame holding a lone surrogate (no frame of ours does): forged
        {
            "connection_id": "x",
            "channel": "booking#1",
            "frames": base64.b64encode(zlib.compress(b'["\\ud800"]')).decode(),
        },
        [],
    ]
    for event in bad:
        result = stack.invoke("deliver", event)
        assert result["error"]["code"] == "invalid_event"
    assert stack.mgmt.calls == []


def test_delivery_event_round_trips_unicode_frames(stack: Stack) -> None:
    stack.seed("D9=")
    frames = [wire.encode({"type": "history", "messages": [{"body": "❤️ 😀"}]})]
    event = {"connection_id": "D9=", "channel": "booking#1", "frames": pack_frames(frames)}
    assert stack.invoke("deliver", event)["delivered"] == 1
    assert stack.mgmt.frames("D9=") == [{"type": "history", "messages": [{"body": "❤️ 😀"}]}]


def test_a_connection_with_no_endpoint_configured_or_stored_is_logged_no_endpoint(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An item written before the proxy stored endpoints, and no API_GATEWAY_ENDPOINT."""
    monkeypatch.delenv("API_GATEWAY_ENDPOINT")
    stack.seed("D9=")
    key = {"booking_id": {"S": "booking#1"}, "connection_id": {"S": "D9="}}
    stack.dynamodb.update_item(TableName=stack.table, Key=key, UpdateExpression="REMOVE endpoint")
    event = {"connection_id": "D9=", "channel": "booking#1", "frames": pack_frames([b'{"type":"history"}'])}
    assert stack.invoke("deliver", event) == {"delivered": 0, "frames": 1, "outcome": "no_endpoint"}
    assert stack.mgmt.calls == []
    assert stack.live_ids() == {"D9="}  # nothing removed either: its $disconnect (or TTL) does that
    missing = "no Management API endpoint for this connection"
    (logged,) = [r for r in caplog.records if r.getMessage() == missing]
    assert (logged.levelno, getattr(logged, "channel", None)) == (logging.ERROR, "booking#1")
    (summary,) = [r for r in caplog.records if getattr(r, "summary", False)]
    assert getattr(summary, "outcome", None) == "no_endpoint"
