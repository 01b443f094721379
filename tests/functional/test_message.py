"""$default: frames answered by the proxy (docs/protocol.md) and backend outcomes (docs/backend.md)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from chalicelib.backend import BackendClient
from chalicelib.channel_sender import ChannelSender
from chalicelib.deadline import Deadline
from chalicelib.gateway import ConnectionGateway
from chalicelib.model import Connection
from chalicelib.schema import to_item
from tests.harness import FAST_LOOKUP_RETRIES, Stack, chat_backend, refused_port
from tests.standins import Reply
from ws_proxy_testing import events
from ws_proxy_testing.isolation import reset_clients

CHAT = {"type": "chat", "booking_id": "1", "token": "tok-a"}
ERROR_KEYS = {"type", "code", "message", "retryable"}
#: What every frame from booking 1's channel carries.
TAG = {"booking_id": "1", "connection_type": "chat"}


def join(stack: Stack, cid: str, query: dict[str, str] | None = None) -> None:
    assert stack.connect(cid, query or CHAT)["statusCode"] == 200


def last(stack: Stack, cid: str) -> dict[str, Any]:
    frames = stack.mgmt.frames(cid)
    assert frames, f"nothing was posted to {cid}"
    return frames[-1]


def assert_error(frame: dict[str, Any], code: str, retryable: bool) -> None:
    assert frame["type"] == "error"
    assert set(frame) - {"ref"} == ERROR_KEYS
    assert frame["code"] == code
    assert frame["retryable"] is retryable
    assert isinstance(frame["message"], str)
    assert frame["message"]


def test_ping_is_answered_by_the_proxy_without_lookup_or_backend(
    stack: Stack, dynamodb_ops: list[str]
) -> None:
    stack.mgmt.open.add("P2=")
    stack.send("P2=", {"type": "ping"})
    assert stack.mgmt.frames("P2=") == [{"type": "pong"}]
    assert stack.backend.requests == []
    assert dynamodb_ops == []


def test_the_proxys_own_frames_are_posted_within_the_handlers_time(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    deadlines: list[Deadline | None] = []
    post = ConnectionGateway.post

    def recording(
        self: ConnectionGateway, connection_id: str, data: bytes, *, deadline: Deadline | None = None
    ) -> Any:
        deadlines.append(deadline)
        return post(self, connection_id, data, deadline=deadline)

    monkeypatch.setattr(ConnectionGateway, "post", recording)
    stack.mgmt.open.add("P3=")
    stack.invoke("message", events.message_event("P3=", {"type": "ping"}), time_left_ms=4_000)
    assert stack.mgmt.frames("P3=") == [{"type": "pong"}]
    (deadline,) = deadlines
    assert deadline is not None
    # the handler's time (4 s less Lambda's 1.5 s reserve) and one second for its notes
    assert deadline.remaining() <= 4.0 - 1.5 + 1.0


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        '"text"',
        "42",
        "null",
        "",
        "   ",
        None,
        '{"body": ',
        '{"a": NaN',
        '{"a": NaN}',
        '{"n": 1e999}',
        '{"a":' * 500 + "1" + "}" * 500,
    ],
)
def test_malformed_frames_answer_invalid_message(stack: Stack, body: str | None) -> None:
    stack.mgmt.open.add("M1=")
    assert stack.send("M1=", body) == {"statusCode": 200}
    assert_error(last(stack, "M1="), "invalid_message", False)
    assert stack.backend.requests == []


def test_binary_frame_answers_invalid_message(stack: Stack) -> None:
    stack.mgmt.open.add("M1=")
    stack.send("M1=", "AAEC", is_base64=True)
    assert_error(last(stack, "M1="), "invalid_message", False)


def test_deeply_nested_json_answers_invalid_message_not_a_crash(stack: Stack) -> None:
    stack.mgmt.open.add("M1=")
    stack.send("M1=", "[" * 50_000 + "]" * 50_000)
    assert_error(last(stack, "M1="), "invalid_message", False)


def test_frame_over_128_kb_answers_too_large(stack: Stack) -> None:
    chat_backend(stack.backend)
    join(stack, "M1=")
    stack.send("M1=", {"body": "x" * (128 * 1024)})
    assert_error(last(stack, "M1="), "too_large", False)
    assert "/api/chat/ws/1/message" not in stack.backend.paths()


def test_unknown_connection_answers_unknown_connection(stack: Stack, dynamodb_ops: list[str]) -> None:
    stack.mgmt.open.add("U1=")
    stack.send("U1=", {"body": "hi", "id": "c-1"})
    frame = last(stack, "U1=")
    assert_error(frame, "unknown_connection", False)
    assert frame["ref"] == "c-1"
    assert stack.backend.requests == []
    # the index is eventually consistent in AWS: a miss is asked again after each pause
    assert dynamodb_ops.count("Query") == 1 + len(FAST_LOOKUP_RETRIES)


def test_a_connection_of_a_type_this_version_does_not_serve_is_told_to_reconnect(stack: Stack) -> None:
    """An item another version wrote, with a connection type missing from this version's table."""
    now = int(time.time())
    item = Connection(
        "V1=",
        "booking#1",
        "video",
        user_id="alice",
        token="tok",
        created_at=now,
        ttl=now + 3600,
        booking_id="1",
    )
    stack.dynamodb.put_item(TableName=stack.table, Item=to_item(item))
    stack.mgmt.open.add("V1=")
    assert stack.send("V1=", {"body": "hi", "id": "v-1"}) == {"statusCode": 200}
    (frame,) = stack.mgmt.frames("V1=")
    assert_error(frame, "unknown_connection", False)
    assert frame["message"] == "this connection's type is no longer served; reconnect"
    assert frame["ref"] == "v-1"
    assert stack.backend.requests == []


def test_expired_item_counts_as_unknown(stack: Stack) -> None:
    stack.seed("E1=", ttl_seconds=-10)
    stack.send("E1=", {"body": "hi"})
    assert_error(last(stack, "E1="), "unknown_connection", False)


def test_message_is_forwarded_unchanged_with_connection_and_token(stack: Stack) -> None:
    chat_backend(stack.backend)
    join(stack, "M1=")
    frame = {"type": "reaction", "emoji": "❤️", "message_id": 123}
    stack.send("M1=", frame)
    path, body = stack.backend.requests[-1]
    assert path == "/api/chat/ws/1/message"
    assert body == {"connection_id": "M1=", "message": frame, "token": "tok-a"}


def test_feed_message_goes_to_the_feed_route_without_a_token(stack: Stack) -> None:
    stack.backend.routes["/api/ws/items-feed/message"] = Reply(200, {"type": "ack"})
    join(stack, "F1=", {"type": "feed"})
    stack.send("F1=", {"subscribe": "cameras"})
    assert stack.backend.requests[-1] == (
        "/api/ws/items-feed/message",
        {"connection_id": "F1=", "message": {"subscribe": "cameras"}},
    )
    assert stack.mgmt.frames("F1=") == [{"type": "ack"}]


def test_answer_without_broadcast_goes_to_the_sender_only(stack: Stack) -> None:
    chat_backend(stack.backend)
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(
        200, {"type": "ack", "ok": True, "broadcast": "yes"}
    )
    join(stack, "A1=")
    join(stack, "B1=")
    stack.send("A1=", {"body": "hi"})
    assert stack.mgmt.frames("A1=") == [{"type": "ack", "ok": True, "broadcast": "yes", **TAG}]
    assert stack.mgmt.frames("B1=") == []


def test_broadcast_reaches_every_connection_of_the_channel_and_type_only(stack: Stack) -> None:
    chat_backend(stack.backend)
    chat_backend(stack.backend, "2")
    stack.backend.routes["/api/ws/bookings/1/connect"] = Reply(200, {})
    join(stack, "A1=")
    join(stack, "B1=")
    join(stack, "X2=", {"booking_id": "2", "token": "t"})
    join(stack, "K1=", {"type": "booking", "booking_id": "1", "token": "t"})
    stack.send("A1=", {"body": "Hello"})
    expected = {
        "type": "message",
        "message": {"body": "Hello"},
        "thread": {"id": 7},
        "broadcast": True,
        **TAG,
    }
    assert stack.mgmt.frames("A1=") == [expected]
    assert stack.mgmt.frames("B1=") == [expected]
    assert stack.mgmt.frames("X2=") == []
    assert stack.mgmt.frames("K1=") == []


def test_gone_connection_is_removed_and_the_rest_still_delivered(stack: Stack) -> None:
    chat_backend(stack.backend)
    for cid in ("A1=", "B1=", "C1=", "D1="):
        join(stack, cid)
    stack.mgmt.open.discard("C1=")  # vanished without $disconnect
    stack.send("A1=", {"body": "still here?"})
    assert stack.live_ids() == {"A1=", "B1=", "D1="}
    for cid in ("A1=", "B1=", "D1="):
        assert last(stack, cid)["message"] == {"body": "still here?"}


def test_throttled_post_is_retried_until_delivered(stack: Stack) -> None:
    chat_backend(stack.backend)
    join(stack, "A1=")
    join(stack, "B1=")
    stack.mgmt.throttle["B1="] = 2
    stack.send("A1=", {"body": "again"})
    assert last(stack, "B1=")["message"] == {"body": "again"}
    assert stack.mgmt.posts_to("B1=") == 3
    assert stack.live_ids() == {"A1=", "B1="}


def test_fan_out_posts_in_parallel(stack: Stack) -> None:
    chat_backend(stack.backend)
    ids = [f"P{i}=" for i in range(16)]
    for cid in ids:
        join(stack, cid)
    stack.mgmt.delay = 0.05
    stack.send("P0=", {"body": "to all"})
    assert all(last(stack, cid)["message"] == {"body": "to all"} for cid in ids)
    assert stack.mgmt.max_in_flight > 1
    assert stack.mgmt.signed == len(ids)  # every post is SigV4-signed


def test_reply_refused_as_too_large_by_api_gateway_becomes_an_error_frame(stack: Stack) -> None:
    chat_backend(stack.backend)
    join(stack, "A1=")
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(200, {"type": "ack", "pad": "x" * 200})
    stack.mgmt.max_post_bytes = 150
    stack.send("A1=", {"body": "hi"})
    assert_error(last(stack, "A1="), "too_large", False)


def test_backend_payload_over_128_kb_becomes_a_too_large_error_frame(stack: Stack) -> None:
    chat_backend(stack.backend)
    join(stack, "A1=")
    join(stack, "B1=")
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(
        200, {"type": "message", "message": {"body": "x" * (130 * 1024)}, "broadcast": True}
    )
    stack.send("A1=", {"body": "hi", "client_id": "k9"})
    frame = last(stack, "A1=")
    assert_error(frame, "too_large", False)
    assert frame["ref"] == "k9"
    assert stack.mgmt.frames("B1=") == []


def test_history_answer_over_128_kb_is_split_into_ordered_parts(stack: Stack) -> None:
    chat_backend(stack.backend)
    join(stack, "A1=")
    messages = [{"id": i, "body": "y" * 1000} for i in range(300)]
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(
        200, {"type": "history", "thread": {"id": 7}, "messages": messages}
    )
    stack.send("A1=", {"type": "load_more"})
    parts = stack.mgmt.frames("A1=")
    assert len(parts) > 2
    assert [p["part"] for p in parts] == list(range(1, len(parts) + 1))
    assert {p["parts"] for p in parts} == {len(parts)}
    assert [m for p in parts for m in p["messages"]] == messages
    assert all(len(b) <= 128 * 1024 for b in stack.mgmt.received["A1="])


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (401, "unauthorized", False),
        (403, "forbidden", False),
        (404, "backend_error", False),
        (400, "backend_error", False),
        (422, "backend_error", False),
        (500, "backend_unavailable", True),
        (502, "backend_unavailable", True),
    ],
)
def test_backend_failure_becomes_an_error_frame_for_the_sender(
    stack: Stack, status: int, code: str, retryable: bool
) -> None:
    chat_backend(stack.backend)
    join(stack, "A1=")
    join(stack, "B1=")
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(status, {"detail": "no"})
    stack.send("A1=", {"body": "hi", "id": 17})
    frame = last(stack, "A1=")
    assert_error(frame, code, retryable)
    assert frame["ref"] == 17
    assert stack.mgmt.frames("B1=") == []
    assert stack.live_ids() == {"A1=", "B1="}


def _broken(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("a bug in the proxy")


def test_an_unexpected_failure_after_the_backend_accepted_the_frame_says_do_not_resend(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat_backend(stack.backend)
    join(stack, "A1=")
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(200, {"type": "message", "broadcast": True})
    monkeypatch.setattr(ChannelSender, "broadcast", _broken)
    assert stack.send("A1=", {"body": "hi", "id": "m-1"}) == {"statusCode": 200}
    frame = last(stack, "A1=")
    assert_error(frame, "delivery_failed", False)  # the backend has it: a resend would store it twice
    assert frame["ref"] == "m-1"
    assert "do not resend" in frame["message"]
    assert [path for path, _ in stack.backend.requests].count("/api/chat/ws/1/message") == 1


def test_an_unexpected_failure_before_the_backend_has_the_frame_may_be_resent(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat_backend(stack.backend)
    join(stack, "A1=")
    monkeypatch.setattr(BackendClient, "post", _broken)
    assert stack.send("A1=", {"body": "hi", "id": "m-1"}) == {"statusCode": 200}
    frame = last(stack, "A1=")
    assert_error(frame, "backend_unavailable", True)
    assert frame["ref"] == "m-1"


def test_backend_timeout_is_retryable(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    chat_backend(stack.backend)
    join(stack, "A1=")
    monkeypatch.setenv("BACKEND_TIMEOUT_SECONDS", "0.3")

    reset_clients()
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(200, {"type": "late"}, delay=1.5)
    stack.send("A1=", {"body": "hi"})
    assert_error(last(stack, "A1="), "backend_unavailable", True)


def test_a_backend_answer_over_the_cap_is_a_backend_error(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:

    chat_backend(stack.backend)
    join(stack, "A1=")
    monkeypatch.setenv("MAX_RESPONSE_BYTES", "2048")
    reset_clients()
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(200, {"type": "huge", "body": "x" * 10_000})
    stack.send("A1=", {"body": "hi"})
    assert_error(last(stack, "A1="), "backend_error", False)
    # the next answer, within the cap, comes on a connection of its own and is delivered whole
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(200, {"type": "small", "body": "x" * 1000})
    stack.send("A1=", {"body": "hi"})
    assert last(stack, "A1=")["type"] == "small"


def test_backend_down_is_retryable(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:

    chat_backend(stack.backend)
    join(stack, "A1=")
    with refused_port() as port:
        monkeypatch.setenv("BACKEND_URL", f"http://127.0.0.1:{port}")  # nothing listens there
        reset_clients()
        stack.send("A1=", {"body": "hi"})
    assert_error(last(stack, "A1="), "backend_unavailable", True)


def test_backend_invalid_json_is_a_backend_error(stack: Stack) -> None:
    chat_backend(stack.backend)
    join(stack, "A1=")
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(200, b"<html>oops</html>")
    stack.send("A1=", {"body": "hi"})
    assert_error(last(stack, "A1="), "backend_error", False)


def test_no_scan_is_ever_issued(stack: Stack, dynamodb_ops: list[str]) -> None:
    chat_backend(stack.backend)
    for cid in ("A1=", "B1=", "C1="):
        join(stack, cid)
    stack.run_deliveries()
    stack.mgmt.open.discard("C1=")
    stack.send("A1=", {"body": "hi"})
    stack.send("B1=", {"type": "ping"})
    stack.disconnect("B1=")
    assert dynamodb_ops, "the hook saw no DynamoDB calls at all"
    assert "Scan" not in dynamodb_ops
    assert set(dynamodb_ops) <= {"PutItem", "Query", "DeleteItem", "GetItem", "BatchWriteItem"}


def test_lookup_is_one_query_on_the_connection_index_and_a_read_of_the_token(
    stack: Stack, dynamodb_ops: list[str]
) -> None:
    chat_backend(stack.backend)
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(200, {"type": "ack"})
    join(stack, "A1=")
    dynamodb_ops.clear()
    stack.send("A1=", {"body": "hi"})
    assert dynamodb_ops == ["Query", "GetItem"]


def test_a_warm_container_looks_a_connection_up_once_and_reads_only_its_token_again(
    stack: Stack, dynamodb_ops: list[str]
) -> None:
    chat_backend(stack.backend)
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(200, {"type": "ack"})
    join(stack, "A1=")
    dynamodb_ops.clear()
    for _ in range(3):
        stack.send("A1=", {"body": "hi"})
    assert dynamodb_ops == ["Query", "GetItem", "GetItem", "GetItem"]
    assert [path for path, _ in stack.backend.requests].count("/api/chat/ws/1/message") == 3
    stack.disconnect("A1=")
    assert stack.items() == []
    stack.mgmt.open.add("A1=")  # let the answer to a stray frame be seen
    stack.send("A1=", {"body": "after"})  # the disconnect evicted it: DynamoDB is asked again
    assert last(stack, "A1=")["code"] == "unknown_connection"


def test_a_connection_without_a_token_costs_one_lookup_per_container(
    stack: Stack, dynamodb_ops: list[str]
) -> None:
    stack.backend.routes["/api/ws/items-feed/message"] = Reply(200, {"type": "ack"})
    join(stack, "F1=", {"type": "feed"})
    dynamodb_ops.clear()
    for _ in range(3):
        stack.send("F1=", {"body": "hi"})
    assert dynamodb_ops == ["Query"]
    assert [body for _, body in stack.backend.requests][-1] == {
        "connection_id": "F1=",
        "message": {"body": "hi"},
    }


def test_unhandled_failure_still_answers_with_an_error_frame(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat_backend(stack.backend)
    join(stack, "A1=")
    from app import get_clients

    registry = get_clients().registry

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(registry, "find", broken)
    assert stack.send("A1=", json.dumps({"body": "hi", "id": "r1"})) == {"statusCode": 200}
    frame = last(stack, "A1=")
    assert_error(frame, "backend_unavailable", True)
    assert frame["ref"] == "r1"


def test_an_event_whose_domain_names_no_management_api_is_answered_500_and_logged(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without API_GATEWAY_ENDPOINT the answers go to the event's domain: an event not from
    API Gateway, naming none, leaves nowhere to post the error, so the failure is the status."""
    caplog.set_level(logging.INFO, logger="chalicelib")
    monkeypatch.delenv("API_GATEWAY_ENDPOINT")
    reset_clients()
    event = events.message_event("D1=", {"body": "hi", "id": "d-1"})
    event["requestContext"]["domainName"] = ""
    assert stack.invoke("message", event) == {"statusCode": 500}
    assert stack.mgmt.calls == []
    assert stack.backend.requests == []
    (summary,) = [r for r in caplog.records if getattr(r, "summary", False) is True]
    assert (vars(summary)["route"], vars(summary)["outcome"]) == ("$default", "internal_error")


def test_when_even_the_error_frame_cannot_be_posted_the_failure_is_logged_and_answered_200(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chalicelib")
    monkeypatch.setattr(ConnectionGateway, "post", _broken)  # the pong, then the error frame
    stack.mgmt.open.add("P1=")
    assert stack.send("P1=", {"type": "ping", "id": "p"}) == {"statusCode": 200}
    assert stack.mgmt.calls == []
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert messages == ["message failed", "the fallback answer failed too"]
    (summary,) = [r for r in caplog.records if getattr(r, "summary", False) is True]
    assert vars(summary)["outcome"] == "internal_error"


def test_auth_never_gives_a_token_to_a_connection_opened_without_one(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.seed("F1=", connection_type="feed", booking=None)  # accepted when feed took no token
    monkeypatch.setenv("BACKEND_ROUTES", '{"feed": {"connect": "/api/ws/items-feed/connect"}}')
    reset_clients()
    stack.backend.routes["/api/ws/items-feed/connect"] = Reply(200, {})
    stack.send("F1=", {"type": "auth", "token": "new", "id": "r"})
    frame = last(stack, "F1=")
    assert_error(frame, "unknown_connection", False)
    assert "without a token" in frame["message"]
    assert stack.backend.requests == []
    assert "token" not in stack.items()[0]
