"""Nothing is dropped without a word: failed posts get a later attempt, then an error frame.

Also: once the backend has accepted a message, a failure to deliver it is not
"retryable" (resending would store it twice).
"""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.errors import BackendUnavailable
from tests.harness import THROTTLE_ATTEMPTS, Stack, chat_backend
from ws_proxy_testing.isolation import reset_clients

CHAT = {"type": "chat", "booking_id": "1", "token": "t"}
#: The Management API's attempts per post in the app under test (as in Lambda).


def join(stack: Stack, *cids: str) -> None:
    for cid in cids:
        assert stack.connect(cid, CHAT)["statusCode"] == 200


def messages(stack: Stack, cid: str) -> list[dict[str, Any]]:
    return [f for f in stack.mgmt.frames(cid) if f.get("type") == "message"]


def errors(stack: Stack, cid: str) -> list[dict[str, Any]]:
    return [f for f in stack.mgmt.frames(cid) if f.get("type") == "error"]


def test_peer_throttled_past_the_retries_gets_the_message_from_a_later_attempt(stack: Stack) -> None:
    chat_backend(stack.backend)
    join(stack, "A1=", "B1=")
    stack.mgmt.throttle["B1="] = THROTTLE_ATTEMPTS
    stack.send("A1=", {"body": "hold on"})
    assert messages(stack, "B1=") == []
    (later,) = stack.lambdas.take("ws-proxy-test-fanout")
    assert later["chunk"]["connection_ids"] == ["B1="]
    assert later["chunk"]["attempt"] == 1
    assert stack.invoke("fanout", later)["delivered"] == 1
    assert [m["message"] for m in messages(stack, "B1=")] == [{"body": "hold on"}]
    assert len(messages(stack, "A1=")) == 1
    assert errors(stack, "B1=") == []


def test_peer_failing_the_later_attempt_too_is_told(stack: Stack) -> None:
    chat_backend(stack.backend)
    join(stack, "A1=", "B1=")
    stack.mgmt.throttle["B1="] = 2 * THROTTLE_ATTEMPTS
    stack.send("A1=", {"body": "lost?"})
    (later,) = stack.lambdas.take("ws-proxy-test-fanout")
    stack.invoke("fanout", later)
    assert stack.lambdas.take("-fanout") == []  # no third attempt
    assert messages(stack, "B1=") == []
    (note,) = errors(stack, "B1=")
    assert note["code"] == "delivery_failed"
    assert note["retryable"] is True
    assert stack.live_ids() == {"A1=", "B1="}  # throttled is not gone


def test_without_a_fanout_function_the_peer_is_told_at_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.delenv("FANOUT_FUNCTION_NAME")
    reset_clients()
    chat_backend(stack.backend)
    join(stack, "A1=", "B1=")
    stack.mgmt.throttle["B1="] = THROTTLE_ATTEMPTS
    stack.send("A1=", {"body": "x"})
    assert stack.lambdas.take("fanout") == []
    (note,) = errors(stack, "B1=")
    assert note["code"] == "delivery_failed"


def test_later_attempt_resumes_a_split_payload_at_the_part_that_failed(stack: Stack) -> None:
    from tests.standins import Reply

    chat_backend(stack.backend)
    join(stack, "A1=", "B1=")
    history = {
        "type": "history",
        "messages": [{"i": i, "b": "x" * 1000} for i in range(300)],
        "broadcast": True,
    }
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(200, history)
    # B's first part goes through, then its second part is throttled past the retries
    throttled: list[str] = []

    def throttle_second_part(method: str, cid: str) -> None:
        if cid == "B1=" and len(stack.mgmt.received["B1="]) == 1 and not throttled:
            throttled.append(cid)
            stack.mgmt.throttle["B1="] = THROTTLE_ATTEMPTS

    stack.mgmt.before_request = throttle_second_part
    stack.send("A1=", {"type": "load_more"})
    parts_total = stack.mgmt.frames("A1=")[0]["parts"]
    assert parts_total > 2
    assert throttled == ["B1="]
    assert len(stack.mgmt.received["B1="]) == 1
    (later,) = stack.lambdas.take("ws-proxy-test-fanout")
    assert later["chunk"]["connection_ids"] == ["B1="]
    assert later["chunk"]["attempt"] == 1
    stack.invoke("fanout", later)
    parts = stack.mgmt.frames("B1=")
    assert [p["part"] for p in parts] == list(range(1, parts_total + 1))  # each part once, in order


def test_failure_after_the_backend_accepted_is_not_retryable(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app import get_clients

    chat_backend(stack.backend)
    join(stack, "A1=", "B1=")
    registry = get_clients().registry

    def registry_down(*args: object, **kwargs: object) -> None:
        raise BackendUnavailable("the connection registry is unavailable; try again")

    monkeypatch.setattr(registry, "channel_ids", registry_down)
    stack.send("A1=", {"body": "saved", "id": "m-7"})
    (frame,) = errors(stack, "A1=")
    assert frame["code"] == "delivery_failed"
    assert frame["retryable"] is False
    assert frame["ref"] == "m-7"
    assert stack.backend.paths().count("/api/chat/ws/1/message") == 1
