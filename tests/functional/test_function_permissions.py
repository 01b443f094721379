"""Each function makes exactly the AWS calls its own IAM policy grants (infra/aws_operations.json).

The static scan in tests/infra sees every call in the code; this runs every path of
every handler against the stand-ins and records, per function, what it really
called: DynamoDB operations (table or index), Management API posts and Lambda
invocations. What a function calls must be granted to it, and what it is granted it
must call somewhere, so no function holds a permission it never uses.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from chalicelib.channel_sender import FUNCTION_NAMES
from chalicelib.internal_events import pack_frames
from tests.harness import Stack, chat_backend
from tests.standins import DynamoDbRecorder, Reply
from ws_proxy_testing import events
from ws_proxy_testing.isolation import reset_clients

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = json.loads((ROOT / "infra" / "aws_operations.json").read_text())["operations"]
FUNCTIONS = FUNCTION_NAMES
HANDLERS = {
    "websocket_connect": "connect",
    "websocket_message": "message",
    "websocket_disconnect": "disconnect",
}


def granted() -> dict[str, set[tuple[str, str]]]:
    """(action, resource kind) each function is granted, runtime-only ones left out."""
    grants: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for op in OPERATIONS:
        if op["call"] == "runtime":
            continue
        for function in op["functions"]:
            grants[function].add((op["action"], op["resource"]))
    return grants


class Recorder:
    """What each function called, attributed to the function running at the time."""

    def __init__(self, stack: Stack, dynamodb: DynamoDbRecorder) -> None:
        self.stack = stack
        self.dynamodb = dynamodb
        self.current = ""
        self.calls: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self.seen = 0  # DynamoDB requests attributed so far

    @staticmethod
    def resource(request: dict[str, Any]) -> str:
        """The resource kind a DynamoDB request needs granted: the table, the index, or the feed's count."""
        if request.get("Select") == "COUNT" and request.get("ExpressionAttributeValues", {}).get(":p") == {
            "S": "feed#"
        }:
            return "feed-count"  # counting the feed, as its own condition allows
        return "index" if request.get("IndexName") else "table"

    def run(self, function: str, event: Any) -> Any:
        """Invoke ``function``'s handler; its posts and invocations are counted as its own."""
        self.current = function
        posts = len(self.stack.mgmt.calls)
        invoked = len(self.stack.lambdas.invocations)
        looked_up = len(self.dynamodb.requests)
        for operation, request in self.dynamodb.requests[self.seen : looked_up]:
            self.calls[""].add((f"dynamodb:{operation}", self.resource(request)))  # outside any handler
        try:
            return self.stack.invoke(HANDLERS.get(function, function), event)
        finally:
            self.seen = len(self.dynamodb.requests)
            for operation, request in self.dynamodb.requests[looked_up : self.seen]:
                self.calls[function].add((f"dynamodb:{operation}", self.resource(request)))
            if any(m == "POST" for m, _, _ in self.stack.mgmt.calls[posts:]):
                self.calls[function].add(("execute-api:ManageConnections", "connections:POST"))
            for name, _, _ in self.stack.lambdas.invocations[invoked:]:
                target = name.rsplit("-", 1)[-1]
                self.calls[function].add(("lambda:InvokeFunction", f"function:{target}"))
            self.current = ""

    def take(self, suffix: str) -> list[Any]:
        return self.stack.lambdas.take(suffix)


@pytest.fixture
def recorder(stack: Stack, dynamodb_recorder: DynamoDbRecorder) -> Recorder:
    """DynamoDB calls are seen on the wire (a recording hop in front of moto), whatever the client."""
    return Recorder(stack, dynamodb_recorder)


def connect(recorder: Recorder, cid: str, query: dict[str, str]) -> None:
    response = recorder.run("websocket_connect", events.connect_event(cid, query))
    assert response["statusCode"] == 200, response
    recorder.stack.mgmt.open.add(cid)


def every_path(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = recorder.stack
    chat = {"type": "chat", "booking_id": "1", "token": "t"}
    chat_backend(stack.backend)
    # $connect: accepted (schedules deliver); a hand-off that fails rolls the item back
    for cid in ("A1=", "B1=", "C1="):
        connect(recorder, cid, chat)
    stack.lambdas.fail = True
    recorder.run("websocket_connect", events.connect_event("X1=", chat))
    stack.lambdas.fail = False
    # $connect to a capped feed: the feed is counted first
    monkeypatch.setenv("MAX_FEED_CONNECTIONS", "100")
    reset_clients()
    connect(recorder, "F1=", {"type": "feed"})
    monkeypatch.delenv("MAX_FEED_CONNECTIONS")
    reset_clients()
    # deliver: delivered; and a connection gone before its history
    for payload in recorder.take("-deliver"):
        recorder.run("deliver", payload)
    recorder.run(
        "deliver", {"connection_id": "GONE=", "channel": "booking#1", "frames": pack_frames([b"{}"])}
    )
    stack.seed("STALE=", open_=False)
    recorder.run(
        "deliver", {"connection_id": "STALE=", "channel": "booking#1", "frames": pack_frames([b"{}"])}
    )
    # $default: ping, broadcast in chunks (a stale member removed), auth, a legacy item
    recorder.run("websocket_message", events.message_event("A1=", {"type": "ping"}))
    monkeypatch.setenv("PUSH_CHUNK_SIZE", "2")
    reset_clients()
    stack.seed("GHOST=", open_=False)
    stack.seed("GHOST=", booking="2", open_=False)  # gone: removed from every channel it is in
    recorder.run("websocket_message", events.message_event("A1=", {"body": "hello"}))
    stack.backend.routes["/api/chat/ws/1/connect"] = Reply(200, {})  # the same (no) user: accepted
    recorder.run("websocket_message", events.message_event("A1=", {"type": "auth", "token": "t2"}))
    stack.seed("OLD=", channel="1")
    recorder.run("websocket_message", events.message_event("OLD=", {"body": "x"}))
    # $default on a user-level socket: subscribe, presence, unsubscribe; a reply to a socket gone
    stack.backend.routes["/api/chat/ws/connect"] = Reply(200, {"user_id": "u"})
    stack.backend.routes["/api/chat/ws/1/connect"] = Reply(200, {"user_id": "u"})
    connect(recorder, "U1=", {"type": "chat", "token": "t"})
    for frame in ({"type": "subscribe", "booking_id": "1"}, {"type": "presence", "booking_id": "1"}):
        recorder.run("websocket_message", events.message_event("U1=", frame))
    recorder.run("websocket_message", events.message_event("U1=", {"type": "unsubscribe", "booking_id": "1"}))
    # subscribed again: the socket found gone loses its own item and, in a batch, its subscription
    recorder.run("websocket_message", events.message_event("U1=", {"type": "subscribe", "booking_id": "1"}))
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(200, {"type": "ack"})
    stack.mgmt.open.discard("U1=")
    recorder.run("websocket_message", events.message_event("U1=", {"booking_id": "1", "body": "x"}))
    chat_backend(stack.backend)
    # fanout: the chunks, with the endpoint configured and without it (read from the items)
    chunks = recorder.take("-fanout")
    assert chunks, "the broadcast handed nothing off"
    recorder.run("fanout", chunks[0])
    monkeypatch.delenv("API_GATEWAY_ENDPOINT")
    reset_clients()
    stack.mgmt.throttle["C1="] = 100  # fails past the retries: a later attempt, from fanout itself
    for chunk in chunks[1:] or chunks:
        recorder.run("fanout", chunk)
    monkeypatch.setenv("API_GATEWAY_ENDPOINT", stack.mgmt.endpoint)
    stack.mgmt.throttle.clear()
    reset_clients()
    # push: a booking in chunks, with a stale member
    stack.seed(["P1=", "P2=", "P3="], connection_type="booking")
    stack.seed("A0=", connection_type="booking", open_=False)  # sorts first: in the chunk push posts itself
    stack.seed("A0=", booking="2", open_=False)  # and in another channel: removed from there too
    recorder.run("push", {"channel": {"booking_id": "1"}, "payload": {"type": "status"}})
    # $disconnect
    recorder.run("websocket_disconnect", events.disconnect_event("B1="))
    # PRESENCE_EVENTS: $connect and $disconnect hand the presence to deliver, which reads the channel
    monkeypatch.setenv("PRESENCE_EVENTS", "true")
    reset_clients()
    stack.backend.routes["/api/chat/ws/1/connect"] = Reply(200, {"user_id": "v"})
    connect(recorder, "V1=", chat)
    for payload in recorder.take("-deliver"):
        recorder.run("deliver", payload)
    recorder.run("websocket_disconnect", events.disconnect_event("V1="))
    for payload in recorder.take("-deliver"):
        recorder.run("deliver", payload)


def test_each_function_calls_exactly_what_its_policy_grants(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    every_path(recorder, monkeypatch)
    grants = granted()
    assert set(recorder.calls) - {""} <= set(FUNCTIONS), recorder.calls.keys()
    assert "" not in recorder.calls, f"a call outside any handler: {recorder.calls['']}"
    for function in FUNCTIONS:
        made = recorder.calls[function]
        assert made <= grants[function], f"{function} calls what it is not granted: {made - grants[function]}"
        assert grants[function] <= made, (
            f"{function} is granted what it never calls: {grants[function] - made}"
        )
