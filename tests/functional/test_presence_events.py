"""``PRESENCE_EVENTS`` on connect and disconnect (docs/protocol.md, "One socket per user"):
``$connect`` and ``$disconnect`` hand the booking channels a socket joined or left to
``deliver``, which tells each channel ``presence_changed`` when that was the user's first
socket there, or last; with the setting off nothing more is invoked or read."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.functional.test_subscriptions import USER, open_, script, sent
from tests.harness import Stack
from tests.standins import Reply
from ws_proxy_testing.isolation import reset_clients


@pytest.fixture
def presence(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("PRESENCE_EVENTS", "true")
    reset_clients()
    script(stack, "1", "2")
    return stack


def changes(stack: Stack, cid: str) -> list[dict[str, Any]]:
    return [f for f in stack.mgmt.frames(cid) if f["type"] == "presence_changed"]


def alice(online: bool, booking: str = "1", connection_type: str = "chat") -> dict[str, Any]:
    return {
        "type": "presence_changed",
        "booking_id": booking,
        "connection_type": connection_type,
        "user_id": "alice",
        "online": online,
    }


def close(stack: Stack, cid: str) -> None:
    assert stack.disconnect(cid) == {"statusCode": 200}
    stack.run_deliveries()


#: alice's chat socket A1= left booking 1, as ``$disconnect`` hands it to ``deliver``.
LEFT = {
    "presence": {
        "connection_id": "A1=",
        "user_id": "alice",
        "online": False,
        "channels": [{"booking_id": "1", "connection_type": "chat"}],
    }
}


def presence_events(stack: Stack) -> list[Any]:
    return [payload for name, _, payload in stack.lambdas.invocations if "presence" in payload]


def test_a_users_first_socket_is_announced_online_to_the_others_of_its_type(presence: Stack) -> None:
    stack = presence
    open_(stack, "B1=", {"booking_id": "1", "token": "tok-bob"})
    open_(stack, "K1=", {"type": "booking", "booking_id": "1", "token": "tok-carol"})
    stack.connect("A1=", {"booking_id": "1", "token": "tok-alice"})
    (handed,) = presence_events(stack)
    assert handed == {
        "presence": {
            "connection_id": "A1=",
            "user_id": "alice",
            "online": True,
            "channels": [{"booking_id": "1", "connection_type": "chat"}],
        }
    }
    stack.run_deliveries()
    assert changes(stack, "B1=") == [alice(True)]
    assert changes(stack, "A1=") == []  # not to itself
    assert changes(stack, "K1=") == []  # another type
    assert [f["type"] for f in stack.mgmt.frames("A1=")] == ["history", "receipt"]
    # a booking socket is announced to the booking's booking sockets
    open_(stack, "L1=", {"type": "booking", "booking_id": "1", "token": "tok-alice"})
    assert changes(stack, "K1=") == [alice(True, connection_type="booking")]
    assert changes(stack, "B1=") == [alice(True)]


def test_a_second_socket_of_the_same_user_is_not_announced(presence: Stack) -> None:
    stack = presence
    open_(stack, "B1=", {"booking_id": "1", "token": "tok-bob"})
    open_(stack, "A1=", {"booking_id": "1", "token": "tok-alice"})
    open_(stack, "A2=", {"booking_id": "1", "token": "tok-alice"})
    assert changes(stack, "B1=") == [alice(True)]
    close(stack, "A1=")  # alice is still there (A2)
    assert changes(stack, "B1=") == [alice(True)]


def test_the_users_last_socket_leaving_is_announced_offline(presence: Stack) -> None:
    stack = presence
    open_(stack, "B1=", {"booking_id": "1", "token": "tok-bob"})
    open_(stack, "A1=", {"booking_id": "1", "token": "tok-alice"})
    open_(stack, "A2=", {"booking_id": "1", "token": "tok-alice"})
    close(stack, "A1=")
    close(stack, "A2=")
    assert changes(stack, "B1=") == [alice(True), alice(False)]
    close(stack, "B1=")  # the last one there: nobody to tell, nothing posted
    assert changes(stack, "A2=") == []


def test_a_closing_socket_is_announced_offline_in_every_booking_it_subscribed_to(presence: Stack) -> None:
    stack = presence
    open_(stack, "B1=", {"booking_id": "1", "token": "tok-bob"})
    open_(stack, "K2=", {"type": "booking", "booking_id": "2", "token": "tok-bob"})
    open_(stack, "U1=", USER)  # alice's own socket: in her user channel, not announced
    sent(stack, "U1=", {"type": "subscribe", "booking_id": "1"})
    sent(stack, "U1=", {"type": "subscribe", "booking_id": "2", "connection_type": "booking"})
    sent(stack, "U1=", {"type": "subscribe", "booking_id": "2"})  # the same booking as chat too
    assert changes(stack, "B1=") == [alice(True)]
    assert changes(stack, "K2=") == [alice(True, "2", "booking")]
    assert stack.disconnect("U1=") == {"statusCode": 200}
    (handed,) = presence_events(stack)
    stack.run_deliveries()
    assert changes(stack, "B1=") == [alice(True), alice(False)]
    assert changes(stack, "K2=") == [alice(True, "2", "booking"), alice(False, "2", "booking")]
    assert sorted(map(tuple, (c.values() for c in handed["presence"]["channels"]))) == [
        ("1", "chat"),
        ("2", "booking"),
        ("2", "chat"),
    ]


def test_a_socket_gone_before_its_arrival_is_announced_is_not_announced_online(presence: Stack) -> None:
    stack = presence
    open_(stack, "B1=", {"booking_id": "1", "token": "tok-bob"})
    stack.connect("A1=", {"booking_id": "1", "token": "tok-alice"})
    assert stack.disconnect("A1=") == {"statusCode": 200}
    online, offline = stack.lambdas.take("-deliver")[1:]  # the first: A1's initial frames
    assert (online["presence"]["online"], offline["presence"]["online"]) == (True, False)
    assert stack.invoke("deliver", online) == {"announced": 0, "delivered": 0, "outcome": "presence"}
    assert changes(stack, "B1=") == []


def test_connect_and_disconnect_still_read_no_channel_and_post_nothing(
    presence: Stack, dynamodb_ops: list[str]
) -> None:
    stack = presence
    open_(stack, "B1=", {"booking_id": "1", "token": "tok-bob"})
    dynamodb_ops.clear()
    posts = len(stack.mgmt.calls)
    stack.connect("A1=", {"booking_id": "1", "token": "tok-alice"})
    assert dynamodb_ops == ["PutItem"]
    assert stack.disconnect("A1=") == {"statusCode": 200}
    assert dynamodb_ops == ["PutItem", "Query", "BatchWriteItem"]  # the index Query, as without presence
    assert len(stack.mgmt.calls) == posts
    assert len(presence_events(stack)) == 2


def test_without_presence_events_connect_and_disconnect_invoke_and_read_nothing_more(
    stack: Stack, dynamodb_ops: list[str]
) -> None:
    script(stack, "1")
    open_(stack, "B1=", {"booking_id": "1", "token": "tok-bob"})
    stack.backend.routes["/api/chat/ws/1/connect"] = Reply(200, {"user_id": "alice"})
    dynamodb_ops.clear()
    stack.lambdas.invocations.clear()
    stack.connect("A1=", {"booking_id": "1", "token": "tok-alice"})  # no initial frames: nothing to deliver
    assert stack.disconnect("A1=") == {"statusCode": 200}
    assert stack.lambdas.invocations == []
    assert dynamodb_ops == ["PutItem", "Query", "BatchWriteItem"]
    assert changes(stack, "B1=") == []
    # an event sent before the setting was turned off: read nothing, post nothing
    dynamodb_ops.clear()
    assert stack.invoke("deliver", LEFT) == {"announced": 0, "outcome": "off"}
    assert dynamodb_ops == []
    assert changes(stack, "B1=") == []


def test_without_a_configured_endpoint_the_others_are_posted_through_their_own(
    presence: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = presence
    monkeypatch.delenv("API_GATEWAY_ENDPOINT")
    reset_clients()
    stack.seed("B1=", user_id="bob")  # stored with the stand-in's endpoint
    assert stack.invoke("deliver", LEFT) == {"announced": 1, "delivered": 1, "outcome": "presence"}
    assert changes(stack, "B1=") == [alice(False)]


def test_a_member_found_gone_loses_its_item_in_that_channel_and_one_in_its_handshake_is_kept(
    presence: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = presence
    stack.seed("GONE=", user_id="bob", open_=False)
    stack.seed("GONE=", booking="2", user_id="bob", open_=False)
    stack.invoke("deliver", LEFT)
    # deliver may not read the index: its other items are left to its $disconnect (or TTL)
    assert sorted(item["booking_id"]["S"] for item in stack.items()) == ["booking#2"]
    monkeypatch.setenv("HANDSHAKE_GRACE_SECONDS", "5")
    reset_clients()
    stack.seed("NEW=", user_id="bob", open_=False)  # 410 while its handshake completes
    assert stack.invoke("deliver", LEFT)["delivered"] == 0
    assert "NEW=" in stack.live_ids()
    assert stack.mgmt.calls[-1] == ("POST", "NEW=", 410)  # skipped: no delivery_failed after it


@pytest.mark.parametrize(
    "payload",
    [
        {"presence": "A1="},
        {"presence": {"connection_id": "A1=", "online": True, "channels": [{"booking_id": "1"}]}},
        {"presence": {**LEFT["presence"], "user_id": "u" * 129}},
        {"presence": {**LEFT["presence"], "connection_id": ""}},
        {"presence": {"connection_id": "A1=", "user_id": "alice", "online": "yes", "channels": []}},
        {"presence": {"connection_id": "A1=", "user_id": "alice", "online": True, "channels": []}},
        {
            "presence": {
                "connection_id": "A1=",
                "user_id": "alice",
                "online": True,
                "channels": [{"booking_id": "1#x", "connection_type": "chat"}],
            }
        },
        {
            "presence": {
                "connection_id": "A1=",
                "user_id": "alice",
                "online": True,
                "channels": [{"booking_id": "1", "connection_type": "notification"}],
            }
        },
        {
            "presence": {
                "connection_id": "A1=",
                "user_id": "alice",
                "online": True,
                "channels": [{"booking_id": "1", "connection_type": ["chat"]}],
            }
        },
    ],
)
def test_a_bad_presence_event_is_answered_invalid_event_and_touches_nothing(
    presence: Stack, dynamodb_ops: list[str], payload: Any
) -> None:
    stack = presence
    stack.seed("B1=", user_id="bob")
    dynamodb_ops.clear()
    answer = stack.invoke("deliver", payload)
    assert answer["error"]["code"] == "invalid_event", answer
    assert dynamodb_ops == []
    assert stack.mgmt.calls == []


def outcomes(caplog: pytest.LogCaptureFixture, route: str) -> list[tuple[Any, Any]]:
    """``outcome`` and ``presence`` of each of ``route``'s summary records."""
    return [
        (getattr(r, "outcome", None), getattr(r, "presence", None))
        for r in caplog.records
        if getattr(r, "summary", False) and getattr(r, "route", None) == route
    ]


def test_presence_events_without_a_deliver_function_are_logged_failed_and_the_socket_still_opens(
    presence: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stack = presence
    monkeypatch.delenv("DELIVER_FUNCTION_NAME")
    reset_clients()
    stack.backend.routes["/api/chat/ws/1/connect"] = Reply(200, {"user_id": "alice"})  # nothing to deliver
    assert stack.connect("A1=", {"booking_id": "1", "token": "tok-alice"}) == {"statusCode": 200}
    assert stack.live_ids() == {"A1="}
    assert stack.disconnect("A1=") == {"statusCode": 200}
    assert stack.live_ids() == set()
    assert stack.lambdas.invocations == []
    required = "DELIVER_FUNCTION_NAME is required for PRESENCE_EVENTS"
    errors = [r.levelno for r in caplog.records if r.getMessage() == required]
    assert errors == [logging.ERROR, logging.ERROR]  # on connect and on disconnect
    assert outcomes(caplog, "$connect") == [("accepted", "failed")]
    assert outcomes(caplog, "$disconnect") == [("removed", "failed")]


def test_a_presence_hand_off_that_fails_is_logged_and_the_socket_still_opens(
    presence: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    stack = presence
    stack.backend.routes["/api/chat/ws/1/connect"] = Reply(200, {"user_id": "alice"})  # nothing to deliver
    stack.lambdas.fail = True  # Lambda's Invoke API answers 500
    assert stack.connect("A1=", {"booking_id": "1", "token": "tok-alice"}) == {"statusCode": 200}
    assert stack.live_ids() == {"A1="}
    (failed,) = [r for r in caplog.records if r.getMessage() == "presence could not be handed to deliver"]
    assert failed.levelno == logging.ERROR
    assert (getattr(failed, "connection_id", None), getattr(failed, "error", None)) == ("A1=", "AwsError")
    stack.lambdas.fail = False
    stack.connect("A2=", {"booking_id": "1", "token": "tok-alice"})
    assert outcomes(caplog, "$connect") == [("accepted", "failed"), ("accepted", "handed")]
