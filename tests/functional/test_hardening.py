"""The proxy under attack: isolated channels, no open relay, deadlines kept, configuration checked.

Each test drives the handlers as Lambda would (tests/conftest.py ``Stack``) with the
backend, the Management API and the Lambda Invoke API as loopback stand-ins.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from chalicelib.clients import GATEWAY_CACHE_SIZE
from chalicelib.internal_events import pack_frames
from chalicelib.model import Connection
from chalicelib.schema import to_item
from tests.harness import Stack, chat_backend
from tests.standins import ManagementApiStandIn, Reply
from ws_proxy_testing import events
from ws_proxy_testing.isolation import reset_clients

NOTE = {"type": "notification", "text": "for alice only"}


def connect_as(stack: Stack, cid: str, query: dict[str, str], user: str) -> None:
    """A connection the backend accepts for ``user`` (whatever the route)."""
    booking = query.get("booking_id")
    kind = query.get("type", "chat")
    path = {
        "chat": f"/api/chat/ws/{booking}/connect",
        "booking": f"/api/ws/bookings/{booking}/connect",
        "notification": "/api/notifications/ws/connect",
    }.get(kind)
    if path:
        stack.backend.routes[path] = Reply(200, {"user_id": user})
    assert stack.connect(cid, query)["statusCode"] == 200


def push(stack: Stack, event: Any) -> dict[str, Any]:
    result: dict[str, Any] = stack.invoke("push", event)
    return result


# -- channels never collide -------------------------------------------------------------------


def test_a_booking_named_like_a_users_channel_does_not_receive_that_users_notifications(
    stack: Stack,
) -> None:
    connect_as(stack, "N1=", {"type": "notification", "token": "t"}, "alice")
    connect_as(stack, "C1=", {"type": "chat", "booking_id": "user_alice", "token": "t"}, "mallory")
    assert push(stack, {"channel": {"user_id": "alice"}, "payload": NOTE})["delivered"] == 1
    assert stack.mgmt.frames("N1=") == [NOTE]
    assert stack.mgmt.frames("C1=") == []


def test_a_booking_named_feed_does_not_receive_the_feed(stack: Stack) -> None:
    assert stack.connect("F1=", {"type": "feed"})["statusCode"] == 200
    connect_as(stack, "C1=", {"type": "chat", "booking_id": "feed", "token": "t"}, "mallory")
    item = {"type": "item_listed", "item": {"id": 1}}
    assert push(stack, {"channel": {"feed": True}, "payload": item})["delivered"] == 1
    assert stack.mgmt.frames("C1=") == []


def test_a_push_to_a_booking_named_like_a_user_does_not_reach_that_users_notifications(
    stack: Stack,
) -> None:
    connect_as(stack, "N1=", {"type": "notification", "token": "t"}, "alice")
    status = {"type": "booking_status", "status": "confirmed"}
    assert push(stack, {"channel": {"booking_id": "user_alice"}, "payload": status})["delivered"] == 0
    assert stack.mgmt.frames("N1=") == []


def test_a_broadcast_in_a_booking_named_like_a_user_stays_in_that_booking(stack: Stack) -> None:
    connect_as(stack, "N1=", {"type": "notification", "token": "t"}, "alice")
    chat_backend(stack.backend, booking="user_alice")
    assert (
        stack.connect("C1=", {"type": "chat", "booking_id": "user_alice", "token": "t"})["statusCode"] == 200
    )
    stack.send("C1=", {"body": "hello"})
    assert [f["type"] for f in stack.mgmt.frames("C1=")] == ["message"]
    assert stack.mgmt.frames("N1=") == []


def test_a_connection_stored_before_channel_kinds_is_asked_to_reconnect(stack: Stack) -> None:
    chat_backend(stack.backend)
    stack.seed("OLD=", channel="1")  # an item as earlier versions wrote it: the raw booking id
    stack.send("OLD=", {"body": "hi", "id": "m1"})
    (frame,) = stack.mgmt.frames("OLD=")
    assert frame["code"] == "unknown_connection"
    assert frame["ref"] == "m1"
    assert stack.backend.requests == []  # its channel cannot be trusted: nothing was forwarded
    assert stack.items() == []


# -- internal events are not an open relay --------------------------------------------------------


@pytest.fixture
def listener() -> Any:
    """A server on loopback that is not this API's Management endpoint."""
    server = ManagementApiStandIn().start()
    yield server
    server.stop()


def test_push_refuses_a_chunk_event_and_posts_nowhere(stack: Stack, listener: ManagementApiStandIn) -> None:
    stack.seed("VICTIM=")
    event = {
        "chunk": {
            "channel": "booking#1",
            "endpoint": listener.endpoint,
            "connection_ids": ["VICTIM="],
            "frames": pack_frames([b'{"type":"phish"}']),
        }
    }
    assert push(stack, event)["error"]["code"] == "invalid_event"
    assert listener.calls == []
    assert stack.mgmt.calls == []
    assert len(stack.items()) == 1


@pytest.mark.parametrize("function", ["fanout", "deliver"])
def test_internal_events_naming_another_endpoint_post_only_through_this_apis(
    stack: Stack, listener: ManagementApiStandIn, monkeypatch: pytest.MonkeyPatch, function: str
) -> None:

    stack.seed("VICTIM=")
    listener.open.add("VICTIM=")
    frames = pack_frames([b'{"type":"hello"}'])
    if function == "fanout":
        body = {"channel": "booking#1", "endpoint": listener.endpoint, "connection_ids": ["VICTIM="]}
        event: dict[str, Any] = {"chunk": {**body, "frames": frames}}
    else:
        event = {"connection_id": "VICTIM=", "channel": "booking#1", "endpoint": listener.endpoint}
        event["frames"] = frames
    for configured in (True, False):  # API_GATEWAY_ENDPOINT, or the endpoint stored at $connect
        if not configured:
            monkeypatch.delenv("API_GATEWAY_ENDPOINT")
            reset_clients()
        stack.invoke(function, event)
    assert listener.calls == []  # no signed request, no session token, to anyone else
    assert stack.mgmt.frames("VICTIM=") == [{"type": "hello"}, {"type": "hello"}]


def test_a_chunk_posts_only_to_connections_of_its_channel(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.delenv("API_GATEWAY_ENDPOINT")
    reset_clients()
    stack.seed("MINE=")
    stack.seed("OTHER=", booking="2")
    chunk = {"channel": "booking#1", "connection_ids": ["MINE=", "OTHER="], "frames": pack_frames([b"{}"])}
    assert stack.invoke("fanout", {"chunk": chunk})["delivered"] == 1
    assert stack.mgmt.posts_to("OTHER=") == 0


def test_a_gone_answer_from_elsewhere_cannot_delete_a_connection(
    stack: Stack, listener: ManagementApiStandIn
) -> None:
    stack.seed("VICTIM=")  # the listener answers 410 for everyone
    chunk = {
        "channel": "booking#1",
        "endpoint": listener.endpoint,
        "connection_ids": ["VICTIM="],
        "frames": pack_frames([b"{}"]),
    }
    stack.invoke("fanout", {"chunk": chunk})
    stack.invoke("push", {"chunk": chunk})
    assert stack.live_ids() == {"VICTIM="}


def test_the_per_endpoint_cache_is_bounded(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from app import get_clients

    monkeypatch.delenv("API_GATEWAY_ENDPOINT")
    reset_clients()
    for n in range(GATEWAY_CACHE_SIZE + 2):
        event = events.message_event("X=", {"type": "ping"})
        event["requestContext"]["domainName"] = f"api{n}.example.com"
        stack.invoke("message", event)
    assert get_clients().gateway_for.cache_info().currsize == GATEWAY_CACHE_SIZE  # type: ignore[attr-defined]


# -- every handler finishes before its deadline ------------------------------------------------------


def test_a_trickling_backend_is_cut_off_at_the_timeout_and_the_sender_may_retry(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setenv("BACKEND_TIMEOUT_SECONDS", "0.3")
    reset_clients()
    chat_backend(stack.backend)
    assert stack.connect("A1=", {"booking_id": "1", "token": "t"})["statusCode"] == 200
    slow = {"type": "message", "padding": "x" * 200}  # 0.1 s a byte: 20 s to answer in full
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(200, slow, trickle=0.1)
    stack.send("A1=", {"body": "hi", "id": "m1"})
    frame = stack.mgmt.frames("A1=")[-1]
    assert frame["code"] == "backend_unavailable"
    assert frame["retryable"] is True
    assert frame["ref"] == "m1"
    stack.backend.wait_cut_off("/api/chat/ws/1/message")


def test_a_backend_call_gets_no_more_than_the_time_the_function_has_left(stack: Stack) -> None:
    chat_backend(stack.backend)  # BACKEND_TIMEOUT_SECONDS is 2 here
    assert stack.connect("A1=", {"booking_id": "1", "token": "t"})["statusCode"] == 200
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(200, {"type": "ok", "pad": "x" * 100}, trickle=0.1)
    # 0.6 s left after the 1.5 s reserve: less than the 2 s timeout, enough to send the call under load
    stack.invoke("message", events.message_event("A1=", {"body": "hi"}), time_left_ms=2_100)
    assert stack.mgmt.frames("A1=")[-1]["code"] == "backend_unavailable"
    stack.backend.wait_cut_off("/api/chat/ws/1/message")


def test_a_hung_management_api_leaves_nobody_without_the_message(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setenv("FANOUT_WORKERS", "2")
    reset_clients()
    chat_backend(stack.backend)
    ids = [f"P{i}=" for i in range(6)]
    stack.seed(["S=", *ids])
    stack.mgmt.hang.update(ids)
    # 1 s of work before the reserve: the backend's answer, then posts that hang
    stack.invoke("message", events.message_event("S=", {"body": "to all"}), time_left_ms=2_500)
    assert [f["message"] for f in stack.mgmt.frames("S=")] == [{"body": "to all"}]
    handed_off = stack.lambdas.take("-fanout")
    named = sorted(cid for event in handed_off for cid in event["chunk"]["connection_ids"])
    assert named == ids  # the posts that hung and the posts never started, all handed on
    stack.mgmt.hang.clear()
    for event in handed_off:
        stack.invoke("fanout", event)
    assert all([f["message"] for f in stack.mgmt.frames(cid)] == [{"body": "to all"}] for cid in ids)


def test_deliver_gives_up_at_once_on_a_connection_that_already_disconnected(stack: Stack) -> None:
    chat_backend(stack.backend)
    stack.connect("D1=", {"booking_id": "1", "token": "t"}, establish=False)
    stack.disconnect("D1=")
    (payload,) = stack.lambdas.take("-deliver")
    assert stack.invoke("deliver", payload)["outcome"] == "gone"
    assert stack.mgmt.posts_to("D1=") == 0


# -- configuration that cannot half-work --------------------------------------------------------------


def test_a_route_override_gets_the_booking_id_never_the_channel(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setenv("BACKEND_ROUTES", '{"chat": {"message": "/v2/chat/{booking_id}/send"}}')
    reset_clients()
    chat_backend(stack.backend)
    stack.backend.routes["/v2/chat/1/send"] = Reply(200, {"type": "ok"})
    assert stack.connect("A1=", {"booking_id": "1", "token": "t"})["statusCode"] == 200
    stack.send("A1=", {"body": "hi"})
    assert stack.backend.paths()[-1] == "/v2/chat/1/send"


def test_a_bad_route_template_answers_misconfigured_and_calls_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setenv("BACKEND_ROUTES", '{"chat": {"message": "/v2/chat/{booking_id}}/send"}}')
    reset_clients()
    response = stack.connect("A1=", {"booking_id": "1", "token": "t"})
    assert response == {"statusCode": 500, "body": "the proxy is misconfigured"}
    assert stack.backend.requests == []
    assert stack.items() == []


# -- a connection in its handshake is not taken for gone ------------------------------------------


def test_a_broadcast_during_a_handshake_keeps_the_new_connection_and_reaches_it_later(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setenv("HANDSHAKE_GRACE_SECONDS", "30")
    reset_clients()
    chat_backend(stack.backend)
    assert stack.connect("A1=", {"booking_id": "1", "token": "t"})["statusCode"] == 200
    stack.connect("NEW=", {"booking_id": "1", "token": "t"}, establish=False)  # 410 until it completes
    stack.lambdas.take("-deliver")
    stack.send("A1=", {"body": "during the handshake"})
    assert stack.live_ids() == {"A1=", "NEW="}  # not removed: it may be in its handshake
    (later,) = stack.lambdas.take("-fanout")
    assert later["chunk"]["connection_ids"] == ["NEW="]
    stack.mgmt.open.add("NEW=")  # the handshake completes
    stack.invoke("fanout", later)
    assert [f["message"] for f in stack.mgmt.frames("NEW=")] == [{"body": "during the handshake"}]


def test_a_later_attempt_run_at_once_keeps_a_connection_still_in_its_handshake(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setenv("HANDSHAKE_GRACE_SECONDS", "30")  # longer than this fanout has left to wait
    reset_clients()
    chat_backend(stack.backend)
    assert stack.connect("A1=", {"booking_id": "1", "token": "t"})["statusCode"] == 200
    stack.connect("NEW=", {"booking_id": "1", "token": "t"}, establish=False)  # 410 until it completes
    stack.lambdas.take("-deliver")
    stack.send("A1=", {"body": "x"})
    (later,) = stack.lambdas.take("-fanout")
    assert stack.invoke("fanout", later)["failed"] == 1  # at once: still in its handshake
    assert stack.live_ids() == {"A1=", "NEW="}
    assert stack.lambdas.take("-fanout") == []  # that was the last attempt


def test_a_connection_gone_for_longer_than_the_grace_is_removed_at_the_first_attempt(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setenv("HANDSHAKE_GRACE_SECONDS", "30")
    reset_clients()
    chat_backend(stack.backend)
    assert stack.connect("A1=", {"booking_id": "1", "token": "t"})["statusCode"] == 200
    old = Connection("OLD=", "booking#1", "chat", token="t", created_at=int(time.time()) - 60, ttl=2**31)
    stack.dynamodb.put_item(TableName=stack.table, Item=to_item(replace(old, booking_id="1")))
    stack.send("A1=", {"body": "x"})
    assert stack.live_ids() == {"A1="}
    assert stack.lambdas.take("-fanout") == []
