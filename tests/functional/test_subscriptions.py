"""One socket per user (docs/protocol.md, "One socket per user"): user-level sockets,
subscribe and unsubscribe, frames naming their booking, and cleanup of every item."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness import THROTTLE_ATTEMPTS, Stack
from tests.standins import Reply
from ws_proxy_testing.isolation import reset_clients

ERROR_KEYS = {"type", "code", "message", "retryable"}
USERS = {"tok-alice": "alice", "tok-bob": "bob", "tok-carol": "carol"}
USER = {"type": "chat", "token": "tok-alice"}


def user_of(request: dict[str, Any]) -> Reply | None:
    return None if request.get("token") in USERS else Reply(401, {"detail": "invalid token"})


def script(stack: Stack, *bookings: str) -> None:
    """The chat routes: a user-level connect, and for each booking connect (history and
    receipt, honouring ``since``) and a message route that broadcasts."""

    def user_connect(request: dict[str, Any]) -> Reply:
        refused = user_of(request)
        user = USERS.get(request.get("token", ""))
        return refused or Reply(200, {"user_id": user, "initial": {"type": "conversations", "items": []}})

    def connect(booking: str) -> Any:
        def answer(request: dict[str, Any]) -> Reply:
            refused = user_of(request)
            if refused:
                return refused
            history: dict[str, Any] = {"type": "history", "messages": [{"id": 1, "body": f"hi {booking}"}]}
            if "since" in request:
                history["since"] = request["since"]
            receipt = {"type": "receipt", "last_read": 1}
            return Reply(200, {"user_id": USERS[request["token"]], "initial": history, "receipt": receipt})

        return answer

    def message(request: dict[str, Any]) -> Reply:
        refused = user_of(request)
        body = request["message"].get("body")
        return refused or Reply(200, {"type": "message", "message": {"body": body}, "broadcast": True})

    stack.backend.routes["/api/chat/ws/connect"] = user_connect
    for booking in bookings:
        stack.backend.routes[f"/api/chat/ws/{booking}/connect"] = connect(booking)
        stack.backend.routes[f"/api/chat/ws/{booking}/message"] = message
        stack.backend.routes[f"/api/ws/bookings/{booking}/connect"] = connect(booking)


def open_(stack: Stack, cid: str, query: dict[str, str]) -> None:
    response = stack.connect(cid, query)
    assert response["statusCode"] == 200, response
    stack.run_deliveries()


def sent(stack: Stack, cid: str, frame: dict[str, Any]) -> list[dict[str, Any]]:
    """The frames ``cid`` received for ``frame``."""
    before = len(stack.mgmt.frames(cid))
    assert stack.send(cid, frame) == {"statusCode": 200}
    return stack.mgmt.frames(cid)[before:]


def assert_error(frame: dict[str, Any], code: str, ref: Any = None) -> None:
    assert frame["type"] == "error", frame
    assert set(frame) - {"ref"} == ERROR_KEYS
    assert frame["code"] == code, frame
    assert frame.get("ref") == ref
    assert frame["message"]


def items_of(stack: Stack, cid: str) -> dict[str, dict[str, Any]]:
    return {item["booking_id"]["S"]: item for item in stack.items() if item["connection_id"]["S"] == cid}


# -- the user-level socket ------------------------------------------------------------------


def test_a_chat_socket_without_booking_is_the_users_own_in_its_user_channel(stack: Stack) -> None:
    script(stack)
    open_(stack, "U1=", USER)
    assert stack.backend.requests[-1] == (
        "/api/chat/ws/connect",
        {"connection_id": "U1=", "token": "tok-alice"},
    )
    item = items_of(stack, "U1=")["user#alice"]
    assert item["connection_type"] == {"S": "chat"}
    assert item["token"] == {"S": "tok-alice"}
    assert "booking" not in item
    assert "home" not in item
    assert stack.mgmt.frames("U1=") == [{"type": "conversations", "items": []}]  # no booking: no tag


def test_a_user_level_connect_whose_answer_names_no_user_is_refused_and_stores_nothing(stack: Stack) -> None:
    stack.backend.routes["/api/chat/ws/connect"] = Reply(200, {})
    assert stack.connect("U1=", USER)["statusCode"] == 502
    assert stack.items() == []


def test_a_user_level_connect_refused_by_the_backend_keeps_its_status(stack: Stack) -> None:
    script(stack)
    assert stack.connect("U1=", {"type": "chat", "token": "nobody"})["statusCode"] == 401
    assert stack.items() == []


def test_the_user_level_connect_route_is_configurable(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKEND_ROUTES", json.dumps({"chat": {"user_connect": "/v2/chat/connect"}}))
    reset_clients()
    stack.backend.routes["/v2/chat/connect"] = Reply(200, {"user_id": "alice"})
    open_(stack, "U1=", USER)
    assert stack.backend.paths() == ["/v2/chat/connect"]


def test_a_booking_socket_still_needs_its_booking(stack: Stack) -> None:
    assert stack.connect("K1=", {"type": "booking", "token": "tok-alice"})["statusCode"] == 400
    assert stack.backend.requests == []


def test_since_in_the_url_reaches_the_connect_route_as_a_number(stack: Stack) -> None:
    script(stack, "1")
    open_(stack, "C1=", {"booking_id": "1", "token": "tok-bob", "since": "1187"})
    assert stack.backend.requests[-1][1] == {"connection_id": "C1=", "token": "tok-bob", "since": 1187}
    assert stack.mgmt.frames("C1=")[0]["since"] == 1187


def test_a_frame_without_booking_id_on_a_user_level_socket_is_refused(stack: Stack) -> None:
    script(stack, "1")
    open_(stack, "U1=", USER)
    (answer,) = sent(stack, "U1=", {"body": "hi", "id": "m1"})
    assert_error(answer, "invalid_message", "m1")
    assert "booking_id" in answer["message"]
    assert stack.backend.paths() == ["/api/chat/ws/connect"]


def test_auth_on_a_user_level_socket_checks_the_token_with_the_user_level_route(stack: Stack) -> None:
    script(stack, "1")
    open_(stack, "U1=", USER)
    sent(stack, "U1=", {"type": "subscribe", "booking_id": "1"})
    USERS["tok-alice-2"] = "alice"
    try:
        (answer,) = sent(stack, "U1=", {"type": "auth", "token": "tok-alice-2", "id": "a"})
    finally:
        del USERS["tok-alice-2"]
    assert answer == {"type": "authenticated", "ref": "a"}
    assert stack.backend.requests[-1] == (
        "/api/chat/ws/connect",
        {"connection_id": "U1=", "token": "tok-alice-2"},
    )
    items = items_of(stack, "U1=")
    assert items["user#alice"]["token"] == {"S": "tok-alice-2"}
    assert "token" not in items["booking#1"]  # the token lives in the socket's own item only


# -- subscribe ------------------------------------------------------------------------------


def test_subscribe_answers_subscribed_then_the_tagged_initial_frames(stack: Stack) -> None:
    script(stack, "42")
    open_(stack, "U1=", USER)
    frames = sent(stack, "U1=", {"type": "subscribe", "booking_id": "42", "since": 7, "id": "s1"})
    assert frames == [
        {"type": "subscribed", "booking_id": "42", "connection_type": "chat", "ref": "s1"},
        {
            "type": "history",
            "messages": [{"id": 1, "body": "hi 42"}],
            "since": 7,
            "booking_id": "42",
            "connection_type": "chat",
        },
        {"type": "receipt", "last_read": 1, "booking_id": "42", "connection_type": "chat"},
    ]
    path, body = stack.backend.requests[-1]
    assert (path, body) == (
        "/api/chat/ws/42/connect",
        {"connection_id": "U1=", "token": "tok-alice", "since": 7},
    )
    items = items_of(stack, "U1=")
    home, sub = items["user#alice"], items["booking#42"]
    assert sub["home"] == {"S": "user#alice"}
    assert sub["types"] == {"SS": ["chat"]}
    assert sub["user_id"] == {"S": "alice"}
    assert sub["booking"] == {"S": "42"}
    assert sub["ttl"] == home["ttl"]  # a subscription lives no longer than its socket
    assert sub["endpoint"] == home["endpoint"]
    assert "token" not in sub


def test_a_booking_id_given_as_a_number_is_the_same_booking(stack: Stack) -> None:
    script(stack, "42")
    open_(stack, "U1=", USER)
    (subscribed, *_) = sent(stack, "U1=", {"type": "subscribe", "booking_id": 42})
    assert subscribed == {"type": "subscribed", "booking_id": "42", "connection_type": "chat"}


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "unauthorized"), (403, "forbidden"), (404, "backend_error"), (503, "backend_unavailable")],
)
def test_a_refused_subscribe_answers_the_error_with_ref_and_stores_nothing(
    stack: Stack, status: int, code: str
) -> None:
    script(stack)
    open_(stack, "U1=", USER)
    stack.backend.routes["/api/chat/ws/9/connect"] = Reply(status, {"detail": "no"})
    (answer,) = sent(stack, "U1=", {"type": "subscribe", "booking_id": "9", "id": "s9"})
    assert_error(answer, code, "s9")
    assert set(items_of(stack, "U1=")) == {"user#alice"}


def test_a_subscribe_answered_for_another_user_is_forbidden_and_stores_nothing(stack: Stack) -> None:
    script(stack)
    open_(stack, "U1=", USER)
    stack.backend.routes["/api/chat/ws/9/connect"] = Reply(200, {"user_id": "mallory"})
    (answer,) = sent(stack, "U1=", {"type": "subscribe", "booking_id": "9", "id": "s9"})
    assert_error(answer, "forbidden", "s9")
    assert set(items_of(stack, "U1=")) == {"user#alice"}


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "subscribe"},
        {"type": "subscribe", "booking_id": ""},
        {"type": "subscribe", "booking_id": "1/2"},
        {"type": "subscribe", "booking_id": "a" * 65},
        {"type": "subscribe", "booking_id": True},
        {"type": "subscribe", "booking_id": -1},
        {"type": "subscribe", "booking_id": ["1"]},
        {"type": "subscribe", "booking_id": "1", "connection_type": "notification"},
        {"type": "subscribe", "booking_id": "1", "connection_type": "video"},
        {"type": "subscribe", "booking_id": "1", "connection_type": None},
        {"type": "subscribe", "booking_id": "1", "since": -1},
        {"type": "subscribe", "booking_id": "1", "since": "5"},
        {"type": "subscribe", "booking_id": "1", "since": True},
        {"type": "subscribe", "booking_id": "1", "since": 1.5},
        {"type": "subscribe", "booking_id": "1", "since": 2**53},
        {"type": "unsubscribe", "booking_id": "1/2"},
        {"type": "presence"},
    ],
)
def test_bad_subscription_frames_answer_invalid_message_and_change_nothing(
    stack: Stack, frame: dict[str, Any]
) -> None:
    script(stack, "1")
    open_(stack, "U1=", USER)
    (answer,) = sent(stack, "U1=", {**frame, "id": "x"})
    assert_error(answer, "invalid_message", "x")
    assert stack.backend.paths() == ["/api/chat/ws/connect"]
    assert set(items_of(stack, "U1=")) == {"user#alice"}


def test_subscribing_again_redelivers_the_initial_frames_and_keeps_one_item(stack: Stack) -> None:
    script(stack, "1")
    open_(stack, "U1=", USER)
    first = sent(stack, "U1=", {"type": "subscribe", "booking_id": "1"})
    again = sent(stack, "U1=", {"type": "subscribe", "booking_id": "1", "id": "again"})
    assert [f["type"] for f in again] == ["subscribed", "history", "receipt"]
    assert again[0]["ref"] == "again"
    assert again[1:] == first[1:]
    assert set(items_of(stack, "U1=")) == {"user#alice", "booking#1"}


def test_beyond_max_subscriptions_answers_too_many_subscriptions_without_asking_the_backend(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_SUBSCRIPTIONS", "2")
    reset_clients()
    script(stack, "1", "2", "3")
    open_(stack, "U1=", USER)
    for booking in ("1", "2"):
        assert sent(stack, "U1=", {"type": "subscribe", "booking_id": booking})[0]["type"] == "subscribed"
    calls = len(stack.backend.requests)
    (answer,) = sent(stack, "U1=", {"type": "subscribe", "booking_id": "3", "id": "s3"})
    assert_error(answer, "too_many_subscriptions", "s3")
    assert len(stack.backend.requests) == calls
    assert set(items_of(stack, "U1=")) == {"user#alice", "booking#1", "booking#2"}
    # a channel already joined is not one more; after an unsubscribe there is room again
    assert sent(stack, "U1=", {"type": "subscribe", "booking_id": "2"})[0]["type"] == "subscribed"
    sent(stack, "U1=", {"type": "unsubscribe", "booking_id": "1"})
    assert sent(stack, "U1=", {"type": "subscribe", "booking_id": "3"})[0]["type"] == "subscribed"


def test_subscribing_through_a_type_whose_connect_route_was_removed_is_refused_and_asks_nobody(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKEND_ROUTES", json.dumps({"booking": {"connect": None}}))
    reset_clients()
    script(stack, "1")
    open_(stack, "U1=", USER)
    frame = {"type": "subscribe", "booking_id": "1", "connection_type": "booking", "id": "s"}
    (answer,) = sent(stack, "U1=", frame)
    assert_error(answer, "invalid_message", "s")
    assert answer["message"] == "booking has no connect route to subscribe through"
    assert stack.backend.paths() == ["/api/chat/ws/connect"]
    assert set(items_of(stack, "U1=")) == {"user#alice"}


def test_a_per_booking_socket_subscribing_its_own_booking_as_its_own_type_resumes_and_stores_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a subscribe again: the connect route is asked (with ``since``), ``subscribed`` and the
    initial frames answer, the socket's own item stays as it is, and nobody is told it arrived."""
    monkeypatch.setenv("PRESENCE_EVENTS", "true")
    reset_clients()
    script(stack, "1")
    open_(stack, "B1=", {"booking_id": "1", "token": "tok-bob"})
    open_(stack, "C1=", {"booking_id": "1", "token": "tok-alice"})
    before, told = items_of(stack, "C1="), len(stack.mgmt.frames("B1="))
    frames = sent(stack, "C1=", {"type": "subscribe", "booking_id": "1", "since": 3, "id": "s"})
    assert [f["type"] for f in frames] == ["subscribed", "history", "receipt"]
    assert frames[0] == {"type": "subscribed", "booking_id": "1", "connection_type": "chat", "ref": "s"}
    assert frames[1]["since"] == 3
    assert all((f["booking_id"], f["connection_type"]) == ("1", "chat") for f in frames)
    assert stack.backend.requests[-1] == (
        "/api/chat/ws/1/connect",
        {"connection_id": "C1=", "token": "tok-alice", "since": 3},
    )
    assert items_of(stack, "C1=") == before  # one item, its token, no home, no types
    assert len(stack.mgmt.frames("B1=")) == told
    (own,) = sent(stack, "C1=", {"body": "still here", "id": "m"})
    assert (own["message"], own["ref"]) == ({"body": "still here"}, "m")


def test_a_socket_without_a_user_cannot_subscribe(stack: Stack) -> None:
    stack.backend.routes["/api/chat/ws/1/connect"] = Reply(200, {})  # accepted, no user named
    open_(stack, "C1=", {"booking_id": "1", "token": "t"})
    (answer,) = sent(stack, "C1=", {"type": "subscribe", "booking_id": "2", "id": "s"})
    assert_error(answer, "invalid_message", "s")
    assert len(stack.items()) == 1


def test_a_feed_socket_forwards_subscription_frames_to_its_route_as_before(stack: Stack) -> None:
    stack.backend.routes["/api/ws/items-feed/message"] = Reply(200, {"type": "ack"})
    open_(stack, "F1=", {"type": "feed"})
    assert sent(stack, "F1=", {"type": "subscribe", "booking_id": "1"}) == [{"type": "ack"}]
    assert stack.backend.paths() == ["/api/ws/items-feed/message"]


# -- unsubscribe ----------------------------------------------------------------------------


def test_unsubscribe_removes_the_item_and_answers_also_when_not_subscribed(stack: Stack) -> None:
    script(stack, "1")
    open_(stack, "U1=", USER)
    sent(stack, "U1=", {"type": "subscribe", "booking_id": "1"})
    expected = {"type": "unsubscribed", "booking_id": "1", "connection_type": "chat", "ref": "u"}
    assert sent(stack, "U1=", {"type": "unsubscribe", "booking_id": "1", "id": "u"}) == [expected]
    assert set(items_of(stack, "U1=")) == {"user#alice"}
    assert sent(stack, "U1=", {"type": "unsubscribe", "booking_id": "1", "id": "u"}) == [expected]
    assert set(items_of(stack, "U1=")) == {"user#alice"}


def test_a_socket_cannot_unsubscribe_from_the_booking_it_connected_to(stack: Stack) -> None:
    script(stack, "1")
    open_(stack, "C1=", {"booking_id": "1", "token": "tok-bob"})
    (answer,) = sent(stack, "C1=", {"type": "unsubscribe", "booking_id": "1", "id": "u"})
    assert_error(answer, "invalid_message", "u")
    assert "connected to" in answer["message"]
    assert set(items_of(stack, "C1=")) == {"booking#1"}


def test_chat_and_booking_subscriptions_of_one_booking_share_one_item(stack: Stack) -> None:
    script(stack, "1")
    open_(stack, "U1=", USER)
    open_(stack, "B1=", {"booking_id": "1", "token": "tok-bob"})
    sent(stack, "U1=", {"type": "subscribe", "booking_id": "1"})
    (subscribed, *_) = sent(
        stack, "U1=", {"type": "subscribe", "booking_id": "1", "connection_type": "booking"}
    )
    assert subscribed == {"type": "subscribed", "booking_id": "1", "connection_type": "booking"}
    assert sorted(items_of(stack, "U1=")["booking#1"]["types"]["SS"]) == ["booking", "chat"]

    def push_reaches() -> bool:
        before = len(stack.mgmt.frames("U1="))
        event = {"channel": {"booking_id": "1"}, "connection_type": "booking", "payload": {"type": "status"}}
        stack.invoke("push", event)
        return len(stack.mgmt.frames("U1=")) > before

    def chat_reaches() -> bool:
        before = len(stack.mgmt.frames("U1="))
        stack.send("B1=", {"body": "hello"})
        return len(stack.mgmt.frames("U1=")) > before

    assert push_reaches()
    assert chat_reaches()
    assert stack.mgmt.frames("U1=")[-2] == {"type": "status", "booking_id": "1", "connection_type": "booking"}
    sent(stack, "U1=", {"type": "unsubscribe", "booking_id": "1"})  # chat, the default
    assert push_reaches()
    assert not chat_reaches()
    sent(stack, "U1=", {"type": "unsubscribe", "booking_id": "1", "connection_type": "booking"})
    assert not push_reaches()
    assert set(items_of(stack, "U1=")) == {"user#alice"}


def test_a_per_booking_socket_subscribing_its_own_booking_as_another_type_extends_its_own_item(
    stack: Stack,
) -> None:
    script(stack, "1")
    open_(stack, "C1=", {"booking_id": "1", "token": "tok-bob"})
    sent(stack, "C1=", {"type": "subscribe", "booking_id": "1", "connection_type": "booking"})
    item = items_of(stack, "C1=")["booking#1"]
    assert sorted(item["types"]["SS"]) == ["booking", "chat"]
    assert "home" not in item
    assert item["token"] == {"S": "tok-bob"}
    stack.send("C1=", {"body": "still chat"})
    assert stack.mgmt.frames("C1=")[-1]["message"] == {"body": "still chat"}
    sent(stack, "C1=", {"type": "unsubscribe", "booking_id": "1", "connection_type": "booking"})
    assert items_of(stack, "C1=")["booking#1"]["types"] == {"SS": ["chat"]}


# -- frames naming their booking --------------------------------------------------------------


def test_a_frame_naming_a_booking_goes_to_its_route_with_the_sockets_token_and_is_broadcast_tagged(
    stack: Stack,
) -> None:
    script(stack, "1", "2")
    open_(stack, "U1=", USER)
    open_(stack, "B1=", {"booking_id": "1", "token": "tok-bob"})
    open_(stack, "B2=", {"booking_id": "2", "token": "tok-bob"})
    sent(stack, "U1=", {"type": "subscribe", "booking_id": "1"})
    frame = {"booking_id": "1", "body": "to one", "id": "m1"}
    (own,) = sent(stack, "U1=", frame)
    assert stack.backend.requests[-1] == (
        "/api/chat/ws/1/message",
        {"connection_id": "U1=", "message": frame, "token": "tok-alice"},
    )
    tagged = {
        "type": "message",
        "message": {"body": "to one"},
        "broadcast": True,
        "booking_id": "1",
        "connection_type": "chat",
    }
    assert own == {**tagged, "ref": "m1"}  # the sender's copy, once
    assert stack.mgmt.frames("B1=")[-1] == tagged
    assert all(f.get("booking_id") == "2" for f in stack.mgmt.frames("B2="))


def test_a_frame_naming_a_booking_not_subscribed_still_goes_to_the_backend_which_decides(
    stack: Stack,
) -> None:
    script(stack, "7")
    open_(stack, "U1=", USER)
    (own,) = sent(stack, "U1=", {"booking_id": "7", "body": "x", "id": 1})
    assert own["ref"] == 1
    assert own["booking_id"] == "7"
    stack.backend.routes["/api/chat/ws/7/message"] = Reply(403, {"detail": "not a participant"})
    (answer,) = sent(stack, "U1=", {"booking_id": "7", "body": "x", "id": 2})
    assert_error(answer, "forbidden", 2)


def test_the_senders_copy_handed_to_a_later_attempt_reaches_a_socket_not_in_that_booking(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender's copy is the sender's socket's: a later attempt looks it up in the socket's own
    channel, not in the booking's, where an unsubscribed socket has no item."""
    script(stack, "7")
    open_(stack, "U1=", USER)  # stored with the stand-in's endpoint
    stack.mgmt.throttle["U1="] = THROTTLE_ATTEMPTS  # the sender's copy fails past the retries
    assert stack.send("U1=", {"booking_id": "7", "body": "x", "id": 1}) == {"statusCode": 200}
    (later,) = stack.lambdas.take("-fanout")
    monkeypatch.delenv("API_GATEWAY_ENDPOINT")  # stored endpoints, checked per channel
    reset_clients()
    assert stack.invoke("fanout", later)["delivered"] == 1
    (own,) = stack.mgmt.frames("U1=")[-1:]
    assert (own["ref"], own["booking_id"]) == (1, "7")


def test_a_frame_names_its_connection_type_else_the_sockets_booking_type(stack: Stack) -> None:
    script(stack, "1")
    stack.backend.routes["/api/ws/bookings/1/message"] = Reply(200, {"type": "booking"})
    open_(stack, "K1=", {"type": "booking", "booking_id": "1", "token": "tok-bob"})
    open_(stack, "U1=", USER)
    assert sent(stack, "K1=", {"booking_id": "1", "type": "status"})[-1]["connection_type"] == "booking"
    assert stack.backend.paths()[-1] == "/api/ws/bookings/1/message"
    assert (
        sent(stack, "U1=", {"booking_id": "1", "connection_type": "booking"})[-1]["connection_type"]
        == "booking"
    )
    assert stack.backend.paths()[-1] == "/api/ws/bookings/1/message"
    (answer,) = sent(stack, "U1=", {"booking_id": "1", "connection_type": "feed", "id": "f"})
    assert_error(answer, "invalid_message", "f")


def test_a_backends_own_booking_id_and_connection_type_are_never_changed(stack: Stack) -> None:
    script(stack, "1")
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(
        200, {"type": "x", "booking_id": "elsewhere", "connection_type": "mine", "broadcast": True}
    )
    open_(stack, "C1=", {"booking_id": "1", "token": "tok-bob"})
    (frame,) = sent(stack, "C1=", {"body": "x"})
    assert frame == {"type": "x", "booking_id": "elsewhere", "connection_type": "mine", "broadcast": True}


# -- cleanup --------------------------------------------------------------------------------


def test_disconnect_removes_every_item_of_the_connection_in_batches(
    stack: Stack, dynamodb_ops: list[str]
) -> None:
    script(stack, *[str(b) for b in range(30)])
    open_(stack, "U1=", USER)
    open_(stack, "B1=", {"booking_id": "1", "token": "tok-bob"})
    for booking in range(30):
        sent(stack, "U1=", {"type": "subscribe", "booking_id": str(booking)})
    assert len(items_of(stack, "U1=")) == 31
    dynamodb_ops.clear()
    stack.disconnect("U1=")
    assert items_of(stack, "U1=") == {}
    assert stack.live_ids() == {"B1="}
    assert dynamodb_ops == ["Query", "BatchWriteItem", "BatchWriteItem"]  # 31 items: 25 + 6


def test_a_socket_met_gone_in_a_broadcast_is_removed_from_every_channel(stack: Stack) -> None:
    script(stack, "1", "2")
    open_(stack, "U1=", USER)
    open_(stack, "B1=", {"booking_id": "1", "token": "tok-bob"})
    sent(stack, "U1=", {"type": "subscribe", "booking_id": "1"})
    sent(stack, "U1=", {"type": "subscribe", "booking_id": "2"})
    stack.mgmt.open.discard("U1=")  # closed without a $disconnect
    stack.send("B1=", {"body": "anyone?"})
    assert items_of(stack, "U1=") == {}
    assert stack.live_ids() == {"B1="}


# -- presence -------------------------------------------------------------------------------


def test_presence_answers_the_users_and_connections_of_the_channel_from_one_query(
    stack: Stack, dynamodb_ops: list[str]
) -> None:
    script(stack, "1")
    open_(stack, "U1=", USER)
    open_(stack, "A2=", {"booking_id": "1", "token": "tok-alice"})
    open_(stack, "B1=", {"booking_id": "1", "token": "tok-bob"})
    open_(stack, "K1=", {"type": "booking", "booking_id": "1", "token": "tok-carol"})  # another type
    sent(stack, "U1=", {"type": "subscribe", "booking_id": "1"})
    sent(stack, "U1=", {"type": "ping"})  # the socket's own item is cached from here on
    dynamodb_ops.clear()
    (answer,) = sent(stack, "U1=", {"type": "presence", "booking_id": "1", "id": "p1"})
    assert answer == {
        "type": "presence",
        "booking_id": "1",
        "connection_type": "chat",
        "users": ["alice", "bob"],
        "connections": 3,
        "ref": "p1",
    }
    assert dynamodb_ops == ["Query"]
    (booking,) = sent(stack, "K1=", {"type": "presence", "booking_id": "1", "connection_type": "booking"})
    assert (booking["users"], booking["connections"]) == (["carol"], 1)


def test_presence_from_a_socket_not_in_the_channel_is_forbidden(stack: Stack) -> None:
    script(stack, "1", "2")
    open_(stack, "U1=", USER)
    open_(stack, "B1=", {"booking_id": "1", "token": "tok-bob"})
    (answer,) = sent(stack, "U1=", {"type": "presence", "booking_id": "1", "id": "p"})
    assert_error(answer, "forbidden", "p")
    sent(stack, "U1=", {"type": "subscribe", "booking_id": "1"})
    (other_type,) = sent(stack, "U1=", {"type": "presence", "booking_id": "1", "connection_type": "booking"})
    assert_error(other_type, "forbidden")


def test_presence_events_announce_a_users_first_socket_and_last_one_only(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRESENCE_EVENTS", "true")
    reset_clients()
    script(stack, "1")
    open_(stack, "B1=", {"booking_id": "1", "token": "tok-bob"})
    open_(stack, "U1=", USER)
    open_(stack, "U2=", USER)
    online = {"type": "presence_changed", "booking_id": "1", "connection_type": "chat", "user_id": "alice"}

    def events() -> list[dict[str, Any]]:
        return [f for f in stack.mgmt.frames("B1=") if f["type"] == "presence_changed"]

    sent(stack, "U1=", {"type": "subscribe", "booking_id": "1"})
    assert events() == [{**online, "online": True}]
    sent(stack, "U2=", {"type": "subscribe", "booking_id": "1"})  # alice was there already
    sent(stack, "U1=", {"type": "subscribe", "booking_id": "1"})  # again: no change
    sent(stack, "U1=", {"type": "unsubscribe", "booking_id": "1"})  # alice is still there (U2)
    assert len(events()) == 1
    assert [f for f in stack.mgmt.frames("U2=") if f["type"] == "presence_changed"] == []
    sent(stack, "U2=", {"type": "unsubscribe", "booking_id": "1"})
    assert events() == [{**online, "online": True}, {**online, "online": False}]


def test_without_presence_events_nothing_is_announced(stack: Stack) -> None:
    script(stack, "1")
    open_(stack, "B1=", {"booking_id": "1", "token": "tok-bob"})
    open_(stack, "U1=", USER)
    sent(stack, "U1=", {"type": "subscribe", "booking_id": "1"})
    sent(stack, "U1=", {"type": "unsubscribe", "booking_id": "1"})
    assert [f["type"] for f in stack.mgmt.frames("B1=")] == ["history", "receipt"]


# -- recipients: each socket once -------------------------------------------------------------


def people(stack: Stack) -> None:
    """Booking 1: bob's per-booking socket B1; alice's user-level U1 (subscribed) and V1 (not),
    her notification socket N1; carol's user-level W1."""
    script(stack, "1")
    stack.backend.routes["/api/notifications/ws/connect"] = Reply(200, {"user_id": "alice"})
    open_(stack, "B1=", {"booking_id": "1", "token": "tok-bob"})
    open_(stack, "U1=", USER)
    open_(stack, "V1=", USER)
    open_(stack, "N1=", {"type": "notification", "token": "tok-alice"})
    open_(stack, "W1=", {"type": "chat", "token": "tok-carol"})
    sent(stack, "U1=", {"type": "subscribe", "booking_id": "1"})


def bodies(stack: Stack, cid: str) -> list[Any]:
    return [f["message"]["body"] for f in stack.mgmt.frames(cid) if f["type"] == "message"]


def test_recipients_reach_their_user_level_sockets_each_once_and_are_removed_from_the_frame(
    stack: Stack,
) -> None:
    people(stack)
    stack.backend.routes["/api/chat/ws/1/message"] = lambda request: Reply(
        200,
        {
            "type": "message",
            "message": {"body": request["message"]["body"]},
            "broadcast": True,
            "recipients": ["alice", "bob", "alice"],
        },
    )
    (own,) = sent(stack, "B1=", {"body": "hello", "id": "m"})
    assert own == {
        "type": "message",
        "message": {"body": "hello"},
        "broadcast": True,
        "booking_id": "1",
        "connection_type": "chat",
        "ref": "m",
    }
    assert bodies(stack, "U1=") == ["hello"]  # in the channel and a recipient: once
    assert bodies(stack, "V1=") == ["hello"]  # a recipient only
    assert bodies(stack, "W1=") == []  # not named
    assert bodies(stack, "N1=") == []  # not a chat socket
    assert all("recipients" not in f for cid in ("U1=", "V1=") for f in stack.mgmt.frames(cid))
    # the sender among the recipients' sockets still gets its own copy only
    (again,) = sent(stack, "U1=", {"booking_id": "1", "body": "from alice", "id": "a"})
    assert again["ref"] == "a"
    assert bodies(stack, "U1=") == ["hello", "from alice"]
    assert bodies(stack, "V1=") == ["hello", "from alice"]
    assert bodies(stack, "B1=") == ["hello", "from alice"]


def test_bad_recipients_are_skipped_and_the_channel_still_gets_the_frame(stack: Stack) -> None:
    people(stack)
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(
        200,
        {
            "type": "message",
            "message": {"body": "x"},
            "broadcast": True,
            "recipients": [True, {}, "", "carol"],
        },
    )
    sent(stack, "B1=", {"body": "x"})
    assert bodies(stack, "W1=") == ["x"]
    assert bodies(stack, "U1=") == ["x"]
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(
        200, {"type": "message", "message": {"body": "y"}, "broadcast": True, "recipients": "carol"}
    )
    sent(stack, "B1=", {"body": "y"})
    assert bodies(stack, "W1=") == ["x"]
    assert bodies(stack, "U1=") == ["x", "y"]


def test_recipients_of_a_reply_that_is_not_broadcast_are_only_removed(stack: Stack) -> None:
    people(stack)
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(200, {"type": "ack", "recipients": ["alice"]})
    assert sent(stack, "B1=", {"body": "x"}) == [
        {"type": "ack", "booking_id": "1", "connection_type": "chat"}
    ]
    assert [f["type"] for f in stack.mgmt.frames("V1=")] == ["conversations"]


def test_the_participants_route_supplies_recipients_when_configured_and_the_answer_names_none(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    people(stack)
    sent(stack, "B1=", {"body": "off by default"})
    assert bodies(stack, "V1=") == []
    assert "/api/chat/ws/1/participants" not in stack.backend.paths()
    routes = {"chat": {"participants": "/api/chat/ws/{booking_id}/participants"}}
    monkeypatch.setenv("BACKEND_ROUTES", json.dumps(routes))
    reset_clients()
    stack.backend.routes["/api/chat/ws/1/participants"] = Reply(200, {"user_ids": ["alice", "bob"]})
    sent(stack, "B1=", {"body": "to the parties"})
    assert stack.backend.requests[-1] == ("/api/chat/ws/1/participants", {"booking_id": "1"})
    assert bodies(stack, "V1=") == ["to the parties"]
    assert bodies(stack, "U1=") == ["off by default", "to the parties"]
    stack.backend.routes["/api/chat/ws/1/participants"] = Reply(503, {})
    sent(stack, "B1=", {"body": "participants down"})  # the channel still gets it
    assert bodies(stack, "U1=")[-1] == "participants down"
    assert bodies(stack, "V1=") == ["to the parties"]


def test_a_push_to_a_user_reaches_the_users_own_socket_untagged(stack: Stack) -> None:
    people(stack)
    result = stack.invoke("push", {"channel": {"user_id": "alice"}, "payload": {"type": "note"}})
    assert result["delivered"] == 3  # U1 and V1 (user-level chat) and N1 (notification)
    for cid in ("U1=", "V1=", "N1="):
        assert stack.mgmt.frames(cid)[-1] == {"type": "note"}
    chat_only = {"channel": {"user_id": "alice"}, "connection_type": "chat", "payload": {"type": "x"}}
    assert stack.invoke("push", chat_only)["delivered"] == 2
