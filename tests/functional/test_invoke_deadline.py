"""Lambda invocations keep the handler's deadline: a Lambda API that hangs never holds a handler past it.

``$connect`` hands a history to ``deliver`` and a fan-out hands chunks to ``fanout``
through Lambda's Invoke API. Here that API takes requests and never answers: each
handler must still answer before its Lambda context's time runs out (the deadline
itself, not a speed), and say what it could not do.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.harness import Stack, chat_backend
from ws_proxy_testing import events

#: The Lambda's time left when the event arrives: less than one invocation attempt's own
#: limit (5 s), so an invocation without the handler's deadline would run past it.
TIME_LEFT_MS = 3_000


def invoke_in_time(stack: Stack, name: str, event: dict[str, Any]) -> Any:
    """Run ``name`` with ``TIME_LEFT_MS`` left; assert it answered before that time ran out."""
    started = time.monotonic()
    answer = stack.invoke(name, event, time_left_ms=TIME_LEFT_MS)
    assert time.monotonic() - started < TIME_LEFT_MS / 1000, "the handler ran past its Lambda deadline"
    return answer


def test_a_history_that_cannot_be_handed_to_deliver_in_time_refuses_the_handshake(stack: Stack) -> None:
    chat_backend(stack.backend)
    stack.lambdas.hang = True
    event = events.connect_event("A1=", {"booking_id": "1", "token": "t"})
    answer = invoke_in_time(stack, "connect", event)
    assert answer["statusCode"] == 502
    assert "could not be scheduled" in answer["body"]
    assert stack.lambdas.hung == 1
    assert stack.live_ids() == set()  # refused: no item left behind


def test_a_fan_out_whose_chunks_cannot_be_handed_off_in_time_still_answers(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Chunks that cannot be handed off are posted here instead; what had no time left is told."""
    monkeypatch.setenv("PUSH_CHUNK_SIZE", "1")
    chat_backend(stack.backend)
    stack.seed(["A1=", "B1=", "C1="])
    stack.lambdas.hang = True
    answer = invoke_in_time(stack, "message", events.message_event("A1=", {"body": "hi", "id": "m-1"}))
    assert answer == {"statusCode": 200}
    assert stack.lambdas.hung >= 1
    assert stack.lambdas.invocations == []
    assert "chunk hand-off failed" in caplog.text


def test_a_presence_hand_off_that_hangs_leaves_the_socket_open_in_time(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRESENCE_EVENTS", "true")
    chat_backend(stack.backend, user_id="u1")  # no history: the presence event is the only invoke
    stack.lambdas.hang = True
    event = events.connect_event("A1=", {"booking_id": "1", "token": "t"})
    assert invoke_in_time(stack, "connect", event) == {"statusCode": 200}
    assert stack.lambdas.hung == 1
    assert stack.live_ids() == {"A1="}
