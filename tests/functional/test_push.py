"""Server push: the backend sends to a booking, a user or the feed; large channels are chunked."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import Stack
from tests.standins import Reply
from ws_proxy_testing.isolation import reset_clients

STATUS = {"type": "booking_status", "booking_id": "1", "status": "confirmed"}


def add(stack: Stack, booking: str, cid: str, ctype: str, *, open_: bool = True, ttl: int = 3600) -> None:
    stack.seed(cid, booking=booking, connection_type=ctype, open_=open_, ttl_seconds=ttl)


def push(stack: Stack, event: Any) -> dict[str, Any]:
    result: dict[str, Any] = stack.invoke("push", event)
    return result


def test_push_to_a_booking_reaches_its_connections_only(stack: Stack) -> None:
    add(stack, "1", "B1=", "booking")
    add(stack, "1", "C1=", "chat")
    add(stack, "2", "B2=", "booking")
    result = push(stack, {"channel": {"booking_id": "1"}, "payload": STATUS})
    assert result == {"delivered": 2, "gone": 0, "failed": 0, "queued": 0}
    assert stack.mgmt.frames("B1=") == [STATUS]
    assert stack.mgmt.frames("C1=") == [STATUS]
    assert stack.mgmt.frames("B2=") == []


def test_connection_type_filter(stack: Stack) -> None:
    add(stack, "1", "B1=", "booking")
    add(stack, "1", "C1=", "chat")
    result = push(stack, {"channel": {"booking_id": 1}, "connection_type": "booking", "payload": STATUS})
    assert result["delivered"] == 1
    assert stack.mgmt.frames("B1=") == [{**STATUS, "connection_type": "booking"}]  # the type it was for
    assert stack.mgmt.frames("C1=") == []


def test_push_to_a_user_reaches_every_connection_of_that_user(stack: Stack) -> None:
    stack.backend.routes["/api/notifications/ws/connect"] = Reply(200, {"user_id": 42})
    for cid in ("N1=", "N2=", "N3="):
        assert stack.connect(cid, {"type": "notification", "token": "t"})["statusCode"] == 200
    stack.seed("O1=", booking=None, connection_type="notification", user_id="43")
    note = {"type": "notification", "text": "new offer"}
    assert push(stack, {"channel": {"user_id": 42}, "payload": note})["delivered"] == 3
    assert all(stack.mgmt.frames(c) == [note] for c in ("N1=", "N2=", "N3="))
    assert stack.mgmt.frames("O1=") == []


def test_push_to_the_feed(stack: Stack) -> None:
    for cid in ("F1=", "F2="):
        assert stack.connect(cid, {"type": "feed"})["statusCode"] == 200
    item = {"type": "item_listed", "item": {"id": 9}}
    assert push(stack, {"channel": {"feed": True}, "payload": item})["delivered"] == 2
    assert stack.mgmt.frames("F1=") == [item] == stack.mgmt.frames("F2=")


def test_exclude_skips_the_named_connections(stack: Stack) -> None:
    add(stack, "1", "B1=", "booking")
    add(stack, "1", "B2=", "booking")
    result = push(stack, {"channel": {"booking_id": "1"}, "payload": STATUS, "exclude": ["B1="]})
    assert result["delivered"] == 1
    assert stack.mgmt.frames("B1=") == []
    assert stack.mgmt.frames("B2=") == [STATUS]


def test_gone_connections_are_removed(stack: Stack) -> None:
    add(stack, "1", "B1=", "booking")
    add(stack, "1", "G1=", "booking", open_=False)
    result = push(stack, {"channel": {"booking_id": "1"}, "payload": STATUS})
    assert (result["delivered"], result["gone"]) == (1, 1)
    assert stack.live_ids() == {"B1="}


def test_expired_items_are_skipped(stack: Stack) -> None:
    add(stack, "1", "B1=", "booking")
    add(stack, "1", "X1=", "booking", ttl=-5)
    assert push(stack, {"channel": {"booking_id": "1"}, "payload": STATUS})["delivered"] == 1
    assert stack.mgmt.posts_to("X1=") == 0


@pytest.mark.parametrize(
    ("event", "code"),
    [
        ([], "invalid_event"),
        ("text", "invalid_event"),
        ({}, "invalid_event"),
        ({"payload": STATUS}, "invalid_event"),
        ({"channel": {"booking_id": "1"}}, "invalid_event"),
        ({"channel": {"booking_id": "1"}, "payload": "text"}, "invalid_event"),
        ({"channel": {"booking_id": "1", "user_id": "2"}, "payload": STATUS}, "invalid_event"),
        ({"channel": {"booking_id": "bad id!"}, "payload": STATUS}, "invalid_event"),
        ({"channel": {"booking_id": True}, "payload": STATUS}, "invalid_event"),
        ({"channel": {"user_id": ""}, "payload": STATUS}, "invalid_event"),
        ({"channel": {"user_id": None}, "payload": STATUS}, "invalid_event"),
        ({"channel": {"feed": "yes"}, "payload": STATUS}, "invalid_event"),
        ({"channel": {"room": "1"}, "payload": STATUS}, "invalid_event"),
        ({"channel": "1", "payload": STATUS}, "invalid_event"),
        ({"channel": {"booking_id": "1"}, "payload": STATUS, "connection_type": "video"}, "invalid_event"),
        ({"channel": {"booking_id": "1"}, "payload": STATUS, "exclude": "B1="}, "invalid_event"),
        ({"channel": {"booking_id": "1"}, "payload": STATUS, "exclude": [1]}, "invalid_event"),
        ({"channel": {"booking_id": "1"}, "payload": STATUS, "extra": 1}, "invalid_event"),
        ({"channel": {"booking_id": "1"}, "payload": {"blob": "x" * (128 * 1024)}}, "too_large"),
        ({"chunk": {"channel": "1"}}, "invalid_event"),
        ({"channel": {"booking_id": "1"}, "payload": {"n": float("nan")}}, "invalid_event"),
    ],
)
def test_invalid_events_are_rejected_and_nothing_is_sent(stack: Stack, event: Any, code: str) -> None:
    add(stack, "1", "B1=", "booking")
    result = push(stack, event)
    assert set(result) == {"error"}
    assert result["error"]["code"] == code
    assert result["error"]["message"]
    assert stack.mgmt.calls == []
    assert stack.lambdas.invocations == []


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        # 128 KB untagged, one byte over once its booking_id is added
        (128 * 1024 - len('{"blob":""}'), "the payload with its booking_id is over the message limit"),
        (128 * 1024 + 1 - len('{"blob":""}'), "the payload is 131073 bytes, over the 128 KB limit"),
    ],
)
def test_a_push_over_the_limit_says_whether_its_booking_id_did_it(
    stack: Stack, blob: int, message: str
) -> None:
    add(stack, "1", "B1=", "booking")
    result = push(stack, {"channel": {"booking_id": "1"}, "payload": {"blob": "x" * blob}})
    assert result == {"error": {"code": "too_large", "message": message}}
    assert stack.mgmt.calls == []


def test_push_without_a_management_endpoint_is_a_configuration_error(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.delenv("API_GATEWAY_ENDPOINT")
    reset_clients()
    result = push(stack, {"channel": {"booking_id": "1"}, "payload": STATUS})
    assert result["error"]["code"] == "misconfigured"


def seed(stack: Stack, booking: str, count: int, ctype: str = "booking") -> list[str]:
    ids = [f"K{i:04d}=" for i in range(count)]
    stack.seed(ids, booking=booking, connection_type=ctype)
    return ids


def test_large_channel_is_chunked_across_async_invocations_and_each_connection_gets_it_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setenv("PUSH_CHUNK_SIZE", "50")
    reset_clients()
    ids = seed(stack, "1", 230)
    result = push(stack, {"channel": {"booking_id": "1"}, "payload": STATUS})
    assert result == {"delivered": 50, "gone": 0, "failed": 0, "queued": 180}
    queued = stack.lambdas.take("-fanout")
    assert len(queued) == 4  # plus the first chunk, run by the invocation itself: five in all
    assert [kind for _, kind, _ in stack.lambdas.invocations] == []
    chunk_results = [stack.invoke("fanout", event) for event in queued]
    assert sum(r["delivered"] for r in chunk_results) == 180
    assert all(stack.mgmt.frames(cid) == [STATUS] for cid in ids)
    assert sum(stack.mgmt.posts_to(cid) for cid in ids) == 230


def test_chunk_that_cannot_be_handed_off_is_delivered_inline(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setenv("PUSH_CHUNK_SIZE", "10")
    reset_clients()
    ids = seed(stack, "1", 25)
    stack.lambdas.fail = True
    result = push(stack, {"channel": {"booking_id": "1"}, "payload": STATUS})
    assert result == {"delivered": 25, "gone": 0, "failed": 0, "queued": 0}
    assert all(stack.mgmt.frames(cid) == [STATUS] for cid in ids)


def test_broadcast_in_a_large_channel_answers_the_sender_in_the_first_chunk(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setenv("PUSH_CHUNK_SIZE", "20")
    reset_clients()
    ids = seed(stack, "1", 60, ctype="chat")
    stack.seed("ZZZZ=", ttl_seconds=60)  # sorts last in the channel, yet must be served first
    stack.backend.routes["/api/chat/ws/1/message"] = lambda req: Reply(
        200, {"type": "message", "message": req["message"], "broadcast": True}
    )
    stack.send("ZZZZ=", {"body": "to everyone"})
    assert stack.mgmt.frames("ZZZZ=")[0]["message"] == {"body": "to everyone"}
    queued = stack.lambdas.take("ws-proxy-test-fanout")
    assert len(queued) == 3
    for event in queued:
        stack.invoke("fanout", event)
    assert all(len(stack.mgmt.frames(cid)) == 1 for cid in [*ids, "ZZZZ="])
