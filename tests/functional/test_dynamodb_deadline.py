"""DynamoDB calls keep the handler's deadline: a DynamoDB that hangs never holds a handler past it.

The app runs with a Lambda context of ``TIME_LEFT_MS`` and DynamoDB behind a hop in
front of moto that holds chosen requests unanswered. Each test checks that the handler
answered before the context's time ran out (the deadline itself, not a speed) and that
what could not be done was said. The last tests: where a handler's deadline comes from.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from chalicelib.deadline import RESERVE_SECONDS, UNBOUNDED_SECONDS, Deadline
from tests.harness import Stack, chat_backend
from tests.standins import DynamoDbRecorder, Reply
from ws_proxy_testing import events

#: The Lambda's time left when the message arrives (less than the 5 s botocore alone would
#: wait for one hung DynamoDB answer): the handler's deadline is 1.5 s, after the 1.5 s reserve.
TIME_LEFT_MS = 3_000


def send_in_time(stack: Stack, cid: str, body: dict[str, Any]) -> dict[str, Any]:
    """Run ``$default`` with ``TIME_LEFT_MS`` left; assert it answered before that time ran out."""
    started = time.monotonic()
    answer: dict[str, Any] = stack.invoke(
        "message", events.message_event(cid, body), time_left_ms=TIME_LEFT_MS
    )
    assert time.monotonic() - started < TIME_LEFT_MS / 1000, "the handler ran past its Lambda deadline"
    return answer


def test_a_hung_channel_query_after_a_slow_backend_is_reported_before_the_deadline(
    stack: Stack, dynamodb_recorder: DynamoDbRecorder
) -> None:
    chat_backend(stack.backend)
    broadcast = {"type": "message", "message": {"body": "hi"}, "broadcast": True}
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(200, broadcast, delay=1.0)
    stack.seed(["A1=", "B1=", "C1="])
    # the sender's lookup (on the index) is answered; the channel's Query never is
    dynamodb_recorder.hang = lambda operation, request: operation == "Query" and "IndexName" not in request
    answer = send_in_time(stack, "A1=", {"body": "hi", "id": "m-1"})
    assert answer == {"statusCode": 200}
    assert dynamodb_recorder.hung == ["Query"]
    assert [path for path, _ in stack.backend.requests] == ["/api/chat/ws/1/message"]
    # the sender is told its message was accepted but not delivered to everyone: no resend
    (frame,) = stack.mgmt.frames("A1=")
    assert (frame["type"], frame["code"], frame["ref"]) == ("error", "delivery_failed", "m-1")
    assert "do not resend" in frame["message"]
    assert stack.mgmt.frames("B1=") == stack.mgmt.frames("C1=") == []


def test_a_hung_lookup_answers_unavailable_before_the_deadline(
    stack: Stack, dynamodb_recorder: DynamoDbRecorder
) -> None:
    chat_backend(stack.backend)
    stack.seed("A1=")
    dynamodb_recorder.hang = lambda operation, request: operation == "Query"
    answer = send_in_time(stack, "A1=", {"body": "hi", "id": "m-1"})
    assert answer == {"statusCode": 200}
    assert dynamodb_recorder.hung == ["Query"]
    assert stack.backend.requests == []  # the backend never got a message nobody could deliver
    (frame,) = stack.mgmt.frames("A1=")
    assert (frame["code"], frame["retryable"], frame["ref"]) == ("backend_unavailable", True, "m-1")


def test_a_hung_token_read_answers_unavailable_before_the_deadline(
    stack: Stack, dynamodb_recorder: DynamoDbRecorder
) -> None:
    """The sender's token, read from its own item at each message, keeps the deadline too."""
    chat_backend(stack.backend)
    stack.seed("A1=")
    dynamodb_recorder.hang = lambda operation, request: operation == "GetItem"
    answer = send_in_time(stack, "A1=", {"body": "hi", "id": "m-1"})
    assert answer == {"statusCode": 200}
    assert set(dynamodb_recorder.hung) == {"GetItem"}
    assert stack.backend.requests == []
    (frame,) = stack.mgmt.frames("A1=")
    assert (frame["code"], frame["retryable"], frame["ref"]) == ("backend_unavailable", True, "m-1")


def test_a_hung_removal_of_a_sockets_items_ends_before_the_deadline(
    stack: Stack, dynamodb_recorder: DynamoDbRecorder
) -> None:
    """``$disconnect`` removes every item of the socket in batches, within its own deadline."""
    stack.seed("A1=")
    stack.seed("A1=", booking="2")
    dynamodb_recorder.hang = lambda operation, request: operation == "BatchWriteItem"
    started = time.monotonic()
    answer = stack.invoke("disconnect", events.disconnect_event("A1="), time_left_ms=TIME_LEFT_MS)
    assert time.monotonic() - started < TIME_LEFT_MS / 1000, "the handler ran past its Lambda deadline"
    assert answer == {"statusCode": 200}
    assert set(dynamodb_recorder.hung) == {"BatchWriteItem"}


class _Answers:
    """A context whose ``get_remaining_time_in_millis`` answers ``millis`` (a number, or not)."""

    def __init__(self, millis: object) -> None:
        self.millis = millis

    def get_remaining_time_in_millis(self) -> object:
        return self.millis


@pytest.mark.parametrize(
    "context",
    [None, object(), _Answers(None), _Answers("soon")],
    ids=["none", "object", "none-left", "text-left"],
)
def test_with_no_lambda_context_the_deadline_is_the_longest_a_function_may_run(context: object) -> None:
    """A script or benchmark that runs a use case outside Lambda: bounded, but not cut short."""
    remaining = Deadline.from_context(context).remaining()
    assert UNBOUNDED_SECONDS - 60 < remaining <= UNBOUNDED_SECONDS


def test_a_lambda_contexts_deadline_keeps_the_reserve_back() -> None:
    remaining = Deadline.from_context(_Answers(TIME_LEFT_MS)).remaining()
    assert 0 < remaining <= TIME_LEFT_MS / 1000 - RESERVE_SECONDS
    assert Deadline.from_context(_Answers(1_000)).remaining() == 0.0  # less than the reserve left: none
