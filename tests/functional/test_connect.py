"""$connect: the query, token and origin (docs/protocol.md), the backend's answer -> handshake."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chalicelib.connect import ENDPOINT_MAX
from tests.harness import Stack, chat_backend, refused_port
from tests.standins import Reply
from ws_proxy_testing import events

CHAT = {"type": "chat", "booking_id": "1", "token": "tok-abc"}


def test_accepted_chat_connection_is_registered_with_contract_attributes(stack: Stack) -> None:
    chat_backend(stack.backend, user_id=42, initial={"type": "history", "messages": []})
    before = int(time.time())
    response = stack.connect("C1=", CHAT)
    assert response == {"statusCode": 200}
    assert stack.backend.requests == [
        ("/api/chat/ws/1/connect", {"connection_id": "C1=", "token": "tok-abc"})
    ]
    (item,) = stack.items()
    assert item["booking_id"] == {"S": "booking#1"}  # the partition key holds the channel key
    assert item["booking"] == {"S": "1"}
    assert item["connection_id"] == {"S": "C1="}
    assert item["connection_type"] == {"S": "chat"}
    assert item["user_id"] == {"S": "42"}
    assert item["token"] == {"S": "tok-abc"}
    assert item["endpoint"] == {"S": stack.mgmt.endpoint}
    created = int(item["created_at"]["N"])
    assert before <= created <= int(time.time())
    assert int(item["ttl"]["N"]) == created + 86400


def test_connect_posts_nothing_itself_and_schedules_the_deferred_delivery(stack: Stack) -> None:
    chat_backend(stack.backend)
    stack.connect("C1=", CHAT, establish=False)
    assert stack.mgmt.calls == []  # API Gateway would answer 410 during $connect
    ((name, kind, payload),) = stack.lambdas.invocations
    assert name == "ws-proxy-test-deliver"
    assert kind == "Event"
    assert payload["connection_id"] == "C1="
    assert payload["channel"] == "booking#1"
    assert "endpoint" not in payload  # deliver takes it from the configuration or the item
    assert "tok-abc" not in str(payload)


def test_type_defaults_to_chat(stack: Stack) -> None:
    chat_backend(stack.backend)
    assert stack.connect("C1=", {"booking_id": "1", "token": "t"})["statusCode"] == 200
    assert stack.items()[0]["connection_type"] == {"S": "chat"}


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"type": "video", "booking_id": "1", "token": "t"}, 400),
        ({"type": "booking", "token": "t"}, 400),
        ({"type": "chat", "booking_id": "", "token": "t"}, 400),
        ({"type": "chat", "booking_id": "a" * 65, "token": "t"}, 400),
        ({"type": "chat", "booking_id": "1/../2", "token": "t"}, 400),
        ({"type": "chat", "booking_id": "1 2", "token": "t"}, 400),
        ({"type": "chat", "booking_id": "1", "token": "t", "since": "-1"}, 400),
        ({"type": "chat", "booking_id": "1", "token": "t", "since": "12a"}, 400),
        ({"type": "chat", "booking_id": "1", "token": "t", "since": "1.5"}, 400),
        ({"type": "chat", "booking_id": "1", "token": "t", "since": ""}, 400),
        ({"type": "chat", "booking_id": "1", "token": "t", "since": "9" * 17}, 400),
        ({"type": "chat", "booking_id": "1", "token": "t", "since": "٣"}, 400),
        ({"type": "chat", "booking_id": "1"}, 401),
        ({"type": "booking", "booking_id": "1"}, 401),
        ({"type": "notification"}, 401),
        ({"type": "chat", "booking_id": "1", "token": "x" * 9000}, 401),
        (None, 401),  # a chat socket without a booking is the user's: it needs a token
    ],
)
def test_bad_query_is_rejected_without_calling_the_backend(
    stack: Stack, query: dict[str, str] | None, status: int
) -> None:
    response = stack.connect("C1=", query)
    assert response["statusCode"] == status
    assert response["body"]  # one human sentence for the client
    assert stack.backend.requests == []
    assert stack.items() == []
    assert stack.lambdas.invocations == []


def test_booking_id_of_64_allowed_characters_is_accepted(stack: Stack) -> None:
    booking = "Ab_-9" * 12 + "abcd"
    assert len(booking) == 64
    chat_backend(stack.backend, booking)
    assert stack.connect("C1=", {"booking_id": booking, "token": "t"})["statusCode"] == 200


def test_feed_needs_no_token_and_no_backend_call(stack: Stack) -> None:
    assert stack.connect("F1=", {"type": "feed"}) == {"statusCode": 200}
    assert stack.backend.requests == []
    (item,) = stack.items()
    assert item["booking_id"] == {"S": "feed#"}
    assert item["connection_type"] == {"S": "feed"}
    assert "token" not in item
    assert stack.lambdas.invocations == []  # nothing to deliver


def test_feed_never_stores_or_forwards_a_token_nobody_verified(stack: Stack) -> None:
    """No backend route checks a feed token, so none is stored (an 8 KB one once was)."""
    assert stack.connect("F1=", {"type": "feed", "token": "x" * 8000})["statusCode"] == 200
    (item,) = stack.items()
    assert "token" not in item
    assert sum(len(str(v)) for v in item.values()) < 600  # what an unauthenticated connect writes
    stack.backend.routes["/api/ws/items-feed/message"] = Reply(200, {"type": "ok"})
    stack.send("F1=", {"body": "hi"})
    assert "token" not in stack.backend.requests[-1][1]


def test_feed_with_a_connect_route_verifies_and_keeps_its_token(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKEND_ROUTES", '{"feed": {"connect": "/api/ws/items-feed/connect"}}')
    stack.backend.routes["/api/ws/items-feed/connect"] = Reply(200, {})
    assert stack.connect("F1=", {"type": "feed"})["statusCode"] == 401  # now a token is required
    assert stack.connect("F2=", {"type": "feed", "token": "opt"})["statusCode"] == 200
    assert stack.backend.paths() == ["/api/ws/items-feed/connect"]
    assert stack.items()[0]["token"] == {"S": "opt"}


def test_booking_type_uses_its_own_route(stack: Stack) -> None:
    stack.backend.routes["/api/ws/bookings/9/connect"] = Reply(200, {})
    assert stack.connect("B1=", {"type": "booking", "booking_id": "9", "token": "t"})["statusCode"] == 200
    assert stack.backend.paths() == ["/api/ws/bookings/9/connect"]
    assert stack.items()[0]["connection_type"] == {"S": "booking"}


def test_notification_channel_is_the_user_from_the_connect_answer(stack: Stack) -> None:
    stack.backend.routes["/api/notifications/ws/connect"] = Reply(200, {"user_id": "u7"})
    assert stack.connect("N1=", {"type": "notification", "token": "t"})["statusCode"] == 200
    assert stack.backend.paths() == ["/api/notifications/ws/connect"]
    item = stack.items()[0]
    assert item["booking_id"] == {"S": "user#u7"}
    assert item["user_id"] == {"S": "u7"}
    assert "booking" not in item


def test_notification_without_user_id_in_the_answer_is_rejected(stack: Stack) -> None:
    stack.backend.routes["/api/notifications/ws/connect"] = Reply(200, {})
    assert stack.connect("N1=", {"type": "notification", "token": "t"})["statusCode"] == 502
    assert stack.items() == []


def test_bearer_subprotocol_carries_the_token_and_is_echoed(stack: Stack) -> None:
    chat_backend(stack.backend)
    response = stack.connect("C1=", {"booking_id": "1"}, {"Sec-WebSocket-Protocol": "bearer, sub-token"})
    assert response == {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "bearer"}}
    assert stack.backend.requests[0][1]["token"] == "sub-token"
    assert stack.items()[0]["token"] == {"S": "sub-token"}


def test_query_token_without_subprotocol_answers_no_protocol_header(stack: Stack) -> None:
    chat_backend(stack.backend)
    assert "headers" not in stack.connect("C1=", CHAT)


def test_bearer_subprotocol_without_a_token_is_unauthorized(stack: Stack) -> None:
    response = stack.connect("C1=", {"booking_id": "1"}, {"Sec-WebSocket-Protocol": "bearer"})
    assert response["statusCode"] == 401
    assert stack.backend.requests == []


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("https://app.example.com", 200),
        ("https://app.example.com/", 200),
        ("https://evil.example.net", 403),
        (None, 403),
    ],
)
def test_origin_allow_list(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, origin: str | None, status: int
) -> None:
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://app.example.com, https://admin.example.com")
    chat_backend(stack.backend)
    event_headers = {"Origin": origin} if origin else {}
    event = events.connect_event("C1=", CHAT, event_headers)
    if origin is None:
        del event["headers"]["Origin"]
    assert stack.invoke("connect", event)["statusCode"] == status
    assert len(stack.items()) == (1 if status == 200 else 0)


@pytest.mark.parametrize(
    ("backend_status", "handshake"),
    [(401, 401), (403, 403), (404, 404), (409, 409), (422, 422), (500, 502), (503, 502)],
)
def test_backend_refusal_maps_to_the_handshake_status_and_leaves_no_item(
    stack: Stack, backend_status: int, handshake: int
) -> None:
    stack.backend.routes["/api/chat/ws/1/connect"] = Reply(backend_status, {"detail": "nope"})
    response = stack.connect("C1=", CHAT)
    assert response["statusCode"] == handshake
    assert stack.items() == []
    assert stack.lambdas.invocations == []


def test_backend_timeout_rejects_504(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKEND_TIMEOUT_SECONDS", "0.3")
    stack.backend.routes["/api/chat/ws/1/connect"] = Reply(200, {}, delay=1.5)
    assert stack.connect("C1=", CHAT)["statusCode"] == 504
    assert stack.items() == []


def test_backend_refusing_connections_rejects_502(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    with refused_port() as port:
        monkeypatch.setenv("BACKEND_URL", f"http://127.0.0.1:{port}")
        assert stack.connect("C1=", CHAT)["statusCode"] == 502
    assert stack.items() == []


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'"text"', b'{"initial": {"n": NaN}}', b'{"a":' * 300 + b"1" + b"}" * 300],
)
def test_backend_answering_garbage_rejects_502(stack: Stack, body: bytes) -> None:
    stack.backend.routes["/api/chat/ws/1/connect"] = Reply(200, body)
    assert stack.connect("C1=", CHAT)["statusCode"] == 502
    assert stack.items() == []


def test_delivery_that_cannot_be_scheduled_rejects_and_removes_the_item(stack: Stack) -> None:
    chat_backend(stack.backend)
    stack.lambdas.fail = True
    assert stack.connect("C1=", CHAT)["statusCode"] == 502
    assert stack.items() == []


def test_missing_configuration_answers_500(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BACKEND_URL")
    response = stack.connect("C1=", CHAT)
    assert response["statusCode"] == 500
    assert stack.items() == []


def test_dynamodb_unavailable_rejects_502(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    chat_backend(stack.backend)
    monkeypatch.setenv("CONNECTIONS_TABLE", "no-such-table")
    response = stack.connect("C1=", CHAT)
    assert response["statusCode"] == 502
    assert stack.lambdas.invocations == []


def test_initial_frames_without_a_deliver_function_refuse_the_handshake_as_misconfigured(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DELIVER_FUNCTION_NAME")
    chat_backend(stack.backend)  # history and receipt to deliver, and nothing to deliver them
    assert stack.connect("C1=", CHAT) == {"statusCode": 500, "body": "the proxy is misconfigured"}
    assert stack.items() == []  # the item written before the hand-off is removed again
    assert stack.lambdas.invocations == []
    (error,) = [r for r in caplog.records if r.getMessage() == "configuration error"]
    assert "DELIVER_FUNCTION_NAME" in getattr(error, "error", "")
    (summary,) = [r for r in caplog.records if getattr(r, "summary", False)]
    assert getattr(summary, "outcome", None) == "misconfigured"


def test_connect_work_failing_unexpectedly_is_refused_500_internal_error(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """No AWS credentials anywhere: the clients are built, and signing the first DynamoDB
    call raises a plain RuntimeError, not a ProxyError."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role asked for, off loopback
    chat_backend(stack.backend)
    assert stack.connect("C1=", CHAT) == {"statusCode": 500, "body": "internal error"}
    assert stack.items() == []
    assert stack.lambdas.invocations == []
    (failed,) = [r for r in caplog.records if r.getMessage() == "connect failed"]
    assert failed.exc_info is not None  # the operator gets the traceback
    assert "no AWS credentials" in str(failed.exc_info[1])
    (summary,) = [r for r in caplog.records if getattr(r, "summary", False)]
    assert getattr(summary, "outcome", None) == "internal_error"


def test_a_domain_name_making_the_endpoint_too_long_is_refused_400_before_the_backend_is_asked(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("API_GATEWAY_ENDPOINT")  # the endpoint comes from the event's domain name
    chat_backend(stack.backend)
    longest = ENDPOINT_MAX - len(f"https:///{events.STAGE}")  # the longest domain name stored
    event = events.connect_event("C1=", CHAT)
    event["requestContext"]["domainName"] = "a" * (longest + 1)
    response = stack.invoke("connect", event)
    assert response == {"statusCode": 400, "body": "the request's domain name is too long"}
    assert stack.backend.requests == []
    assert stack.items() == []
    assert stack.lambdas.invocations == []
    event["requestContext"]["domainName"] = "a" * longest
    assert stack.invoke("connect", event)["statusCode"] == 200
    (item,) = stack.items()
    assert len(item["endpoint"]["S"]) == ENDPOINT_MAX
