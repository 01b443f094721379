"""Untrusted text: lone surrogates from clients, the backend or a push never break a handler.

JSON's ``\\ud800`` escapes parse into strings that cannot be encoded as UTF-8. Client
frames and push payloads holding one are refused (``invalid_message`` / ``invalid_event``);
the backend's answers have each lone surrogate replaced by U+FFFD, so one bad stored
message cannot lock a booking. Every frame posted is valid UTF-8 JSON.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import Stack, chat_backend
from tests.standins import DynamoDbRecorder, Reply
from ws_proxy_testing.isolation import reset_clients

CHAT = {"type": "chat", "booking_id": "1", "token": "tok-a"}
MESSAGE_PATH = "/api/chat/ws/1/message"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def internal_errors(self) -> list[str]:
        return [
            r.getMessage()
            for r in self.records
            if r.exc_info or getattr(r, "outcome", None) in ("internal_error", "misconfigured")
        ]


@pytest.fixture
def app_log() -> Iterator[_Records]:
    """Every record of the app's loggers (``chalicelib`` does not propagate to the root)."""
    handler = _Records()
    logging.getLogger("chalicelib").addHandler(handler)
    yield handler
    logging.getLogger("chalicelib").removeHandler(handler)


def posted(stack: Stack, cid: str) -> list[Any]:
    """The frames posted to ``cid``, each checked to be strict UTF-8 JSON."""
    return [json.loads(raw.decode("utf-8")) for raw in stack.mgmt.received.get(cid, [])]


def join(stack: Stack, *cids: str) -> None:
    for cid in cids:
        assert stack.connect(cid, CHAT)["statusCode"] == 200


def message_calls(stack: Stack) -> int:
    return stack.backend.paths().count(MESSAGE_PATH)


# -- client frames: refused --------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"id":"\\ud800","body":"x"}',  # the reproduced case: an id that cannot be echoed
        '{"body":"a\\udc80b"}',
        '{"\\udfff":1}',
        '{"body":["ok",{"deep":"\\ud83d"}]}',  # half of a pair
        '{"body":"\ud800"}',  # a raw surrogate in the event's text, not an escape
    ],
)
def test_client_frame_with_a_lone_surrogate_is_refused_with_an_error_that_arrives(
    stack: Stack, app_log: _Records, body: str
) -> None:
    chat_backend(stack.backend)
    join(stack, "A1=", "B1=")
    stack.backend.routes[MESSAGE_PATH] = Reply(400, {"detail": "rejected"})
    assert stack.send("A1=", body) == {"statusCode": 200}
    (frame,) = posted(stack, "A1=")
    assert frame["type"] == "error"
    assert frame["code"] == "invalid_message"
    assert "ref" not in frame
    assert "surrogate" in frame["message"]
    assert message_calls(stack) == 0  # never forwarded
    assert posted(stack, "B1=") == []
    assert app_log.internal_errors() == []


def test_a_refused_frame_still_echoes_an_id_that_can_be_echoed(stack: Stack, app_log: _Records) -> None:
    chat_backend(stack.backend)
    join(stack, "A1=")
    stack.send("A1=", '{"id":"c-1","body":"bad \\udc80"}')
    (frame,) = posted(stack, "A1=")
    assert frame["code"] == "invalid_message"
    assert frame["ref"] == "c-1"
    assert message_calls(stack) == 0
    assert app_log.internal_errors() == []


def test_surrogate_pairs_are_text_and_are_forwarded(stack: Stack) -> None:
    chat_backend(stack.backend)
    join(stack, "A1=", "B1=")
    stack.send("A1=", '{"body":"\\ud83d\\ude00 ok"}')
    assert posted(stack, "B1=")[-1]["message"] == {"body": "😀 ok"}


# -- backend answers: replaced -----------------------------------------------------


def test_history_with_a_lone_surrogate_does_not_lock_the_booking(stack: Stack, app_log: _Records) -> None:
    history = {"type": "history", "messages": [{"id": 1, "body": "bad \udc80 text"}, {"id": 2, "body": "ok"}]}
    chat_backend(stack.backend, initial=history, receipt={"type": "receipt", "last_read": "\ud800"})
    for cid in ("A1=", "B1="):  # every later connect to the booking still works
        assert stack.connect(cid, CHAT)["statusCode"] == 200
    results = stack.run_deliveries()
    assert [r["outcome"] for r in results] == ["delivered", "delivered"]
    for cid in ("A1=", "B1="):
        history_frame, receipt = posted(stack, cid)
        assert history_frame["messages"] == [{"id": 1, "body": "bad \ufffd text"}, {"id": 2, "body": "ok"}]
        assert receipt == {
            "type": "receipt",
            "last_read": "\ufffd",
            "booking_id": "1",
            "connection_type": "chat",
        }
    assert app_log.internal_errors() == []


def test_backend_reply_with_lone_surrogates_reaches_everyone_with_replacement_characters(
    stack: Stack, app_log: _Records
) -> None:
    chat_backend(stack.backend)
    join(stack, "A1=", "B1=")
    stack.backend.routes[MESSAGE_PATH] = Reply(
        200, {"type": "message", "message": {"body": "x\ud800y", "\udc00k": 1}, "broadcast": True}
    )
    stack.send("A1=", {"body": "hi"})
    expected = {
        "type": "message",
        "message": {"body": "x\ufffdy", "\ufffdk": 1},
        "broadcast": True,
        "booking_id": "1",
        "connection_type": "chat",
    }
    assert posted(stack, "A1=") == [expected] == posted(stack, "B1=")
    assert app_log.internal_errors() == []


def test_backend_refusal_whose_detail_has_a_lone_surrogate_still_reaches_the_sender(
    stack: Stack, app_log: _Records
) -> None:
    chat_backend(stack.backend)
    join(stack, "A1=")
    stack.backend.routes[MESSAGE_PATH] = Reply(400, {"detail": "no \udbff way"})
    stack.send("A1=", {"body": "hi", "id": 5})
    (frame,) = posted(stack, "A1=")
    assert frame == {
        "type": "error",
        "code": "backend_error",
        "message": "no \ufffd way",
        "retryable": False,
        "ref": 5,
    }
    assert app_log.internal_errors() == []


# -- connect -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ({"booking_id": "1", "token": "abc\ud800"}, {}),
        ({"booking_id": "1"}, {"Sec-WebSocket-Protocol": "bearer, \udc80abc"}),
    ],
)
def test_a_token_with_a_lone_surrogate_is_refused_before_the_backend_is_called(
    stack: Stack, app_log: _Records, query: dict[str, str], headers: dict[str, str]
) -> None:
    chat_backend(stack.backend)
    response = stack.connect("A1=", query, headers)
    assert response["statusCode"] == 401
    response["body"].encode("utf-8")
    assert stack.backend.requests == []
    assert stack.items() == []
    assert app_log.internal_errors() == []


def test_a_user_id_with_a_lone_surrogate_is_a_backend_error_and_stores_nothing(
    stack: Stack, app_log: _Records
) -> None:
    stack.backend.routes["/api/notifications/ws/connect"] = Reply(200, {"user_id": "u\ud800"})
    response = stack.connect("N1=", {"type": "notification", "token": "t"})
    assert response == {"statusCode": 502, "body": "the chat service answered an invalid user_id"}
    assert stack.items() == []
    assert [r.getMessage() for r in app_log.records if r.levelno >= logging.ERROR] == []  # no write tried
    assert app_log.internal_errors() == []


def test_a_refused_connect_whose_detail_has_a_lone_surrogate_answers_text(stack: Stack) -> None:
    stack.backend.routes["/api/chat/ws/1/connect"] = Reply(401, {"detail": "expired \udc80"})
    assert stack.connect("A1=", CHAT) == {"statusCode": 401, "body": "expired \ufffd"}


# -- push: refused -------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        {"channel": {"booking_id": "1"}, "payload": {"type": "note", "text": "a\ud800"}},
        {"channel": {"booking_id": "1"}, "payload": {"type": "note", "\udfff": "key"}},
        {"channel": {"user_id": "u\udc80"}, "payload": {"type": "note"}},
    ],
)
def test_push_with_a_lone_surrogate_is_an_invalid_event_and_posts_nothing(
    stack: Stack, app_log: _Records, event: dict[str, Any]
) -> None:
    stack.backend.routes["/api/ws/bookings/1/connect"] = Reply(200, {"user_id": "u1"})
    assert stack.connect("B1=", {"type": "booking", "booking_id": "1", "token": "t"})["statusCode"] == 200
    clean = {"channel": {"booking_id": "1"}, "payload": {"type": "note", "text": "ok"}}
    assert stack.invoke("push", clean)["delivered"] == 1  # the channel is reachable
    stack.mgmt.calls.clear()
    result = stack.invoke("push", event)
    assert result["error"]["code"] == "invalid_event"
    assert "surrogate" in result["error"]["message"]
    json.dumps(result, ensure_ascii=False).encode("utf-8")
    assert stack.mgmt.calls == []
    assert posted(stack, "B1=") == [{**clean["payload"], "booking_id": "1"}]  # tagged with its booking
    assert app_log.internal_errors() == []


# -- deliver: a failed cleanup is an outcome, not a crash -------------------------------


def test_deliver_that_cannot_remove_a_gone_connection_logs_it_and_answers(
    stack: Stack, app_log: _Records, monkeypatch: pytest.MonkeyPatch, dynamodb_recorder: DynamoDbRecorder
) -> None:
    chat_backend(stack.backend)
    stack.connect("G1=", CHAT, establish=False)  # the client leaves before the handshake ends
    (payload,) = stack.lambdas.take("-deliver")
    dynamodb_recorder.throttle = lambda operation, request: operation == "DeleteItem"
    monkeypatch.setenv("DELIVER_RETRY_SECONDS", "0.2")
    reset_clients()
    result = stack.invoke("deliver", payload)
    assert result == {"delivered": 0, "frames": 2, "outcome": "gone"}
    assert app_log.internal_errors() == []
    cleanup = [r for r in app_log.records if r.getMessage() == "stale connection cleanup failed"]
    assert len(cleanup) == 1
    assert cleanup[0].levelno >= logging.WARNING
    assert len(stack.items()) == 1  # left for TTL
