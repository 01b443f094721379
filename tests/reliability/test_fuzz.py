"""Fuzz: arbitrary client frames, connects, backend answers, histories and pushes never break the proxy.

Generated text includes what cannot be encoded: lone surrogates (``"\\ud800"`` escapes,
and raw in the event's text), invalid UTF-8 and CESU-8 bytes from the backend, huge
numbers, deep nesting, ids too long to echo. Properties, for every generated case:
- the handler answers (no exception escapes, and none is caught as an internal error);
- $connect answers a status from the contract, and writes an item exactly when it answers 200;
- every frame the proxy sends is strict UTF-8 JSON and is either the backend's payload
  (its lone surrogates replaced by U+FFFD) or a CONTRACT §1 error frame of at most 2 KB
  whose ``ref`` is the sender's own id;
- a client frame or push payload holding a lone surrogate is refused and reaches no one.

`make test` runs a quick subset; `make reliability` runs 10,000 cases per property
(``RELIABILITY_EXAMPLES`` overrides).
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import app as app_module
from chalicelib.model import Connection
from chalicelib.protocol import tagged
from chalicelib.routes import channel_key
from chalicelib.schema import to_item
from infra.table import ensure_table
from tests.harness import app_env, moto_client
from tests.standins import BackendStandIn, LambdaStandIn, ManagementApiStandIn, Reply
from ws_proxy_testing import events
from ws_proxy_testing.isolation import reset_clients, use_environment

EXAMPLES = int(os.environ.get("RELIABILITY_EXAMPLES", "150"))
CODES = {
    "invalid_message",
    "too_large",
    "unknown_connection",
    "unauthorized",
    "forbidden",
    "backend_unavailable",
    "backend_error",
    "delivery_failed",
}
CONNECT_STATUSES = {200, 400, 401, 403, 404, 502, 504}
SENDER = "FUZZSENDER0001="
PEER = "FUZZPEER000001="
#: A booking-type connection of booking 1, made through $connect (the push target).
LISTENER = "FUZZLISTENER01="
MESSAGE_PATH = "/api/chat/ws/1/message"
#: What every frame from booking 1's chat channel carries (unless the backend set its own).
TAG = {"booking_id": "1", "connection_type": "chat"}
#: Error frames are small whatever the client sent: the echoed ref is bounded.
ERROR_FRAME_BOUND = 2048
_LONE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(value: Any) -> bool:
    stack = [value]  # no recursion: generated frames nest thousands deep
    while stack:
        current = stack.pop()
        if isinstance(current, str) and _LONE.search(current):
            return True
        if isinstance(current, list):
            stack.extend(current)
        elif isinstance(current, dict):
            stack.extend([*current, *current.values()])
    return False


def scrubbed(value: Any) -> Any:
    """What the proxy must deliver for a backend value: lone surrogates become U+FFFD."""
    if isinstance(value, str):
        return _LONE.sub("\ufffd", value)
    if isinstance(value, list):
        return [scrubbed(v) for v in value]
    if isinstance(value, dict):
        return {scrubbed(k): scrubbed(v) for k, v in value.items()}
    return value


def strict_json(raw: bytes) -> Any:
    """A posted frame: strict UTF-8 (no lone surrogate, no invalid byte), then JSON."""
    return json.loads(raw.decode("utf-8"))


class Harness:
    def __init__(
        self,
        client: Client,
        backend: BackendStandIn,
        mgmt: ManagementApiStandIn,
        lambdas: LambdaStandIn,
        dynamodb: Any,
        table: str,
    ) -> None:
        self.client, self.backend, self.mgmt, self.lambdas, self.dynamodb, self.table = (
            client,
            backend,
            mgmt,
            lambdas,
            dynamodb,
            table,
        )
        self.internal_errors: list[str] = []

    def posted(self) -> dict[str, list[bytes]]:
        return {cid: list(frames) for cid, frames in self.mgmt.received.items() if frames}

    def invoke(self, name: str, event: Any) -> Any:
        return app_module.app.handler_map[name](event, events.LambdaContext(name))


class _InternalErrors(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or getattr(record, "outcome", None) == "internal_error":
            self.sink.append(record.getMessage())


def echo(request: Any) -> Reply:
    """The backend echoes the message back as a broadcast, like the chat does."""
    return Reply(200, {"type": "message", "message": request["message"], "broadcast": True})


@pytest.fixture(scope="module")
def harness(moto_endpoint: str) -> Iterator[Harness]:
    backend = BackendStandIn().start()
    mgmt = ManagementApiStandIn(events.STAGE).start()
    lambdas = LambdaStandIn().start()
    table = f"fuzz-{uuid.uuid4().hex[:8]}"
    env = app_env(backend, mgmt, lambdas, moto_endpoint, table)
    dynamodb = moto_client(moto_endpoint)
    ensure_table(dynamodb, table)
    with pytest.MonkeyPatch.context() as mp:
        use_environment(mp, env)
        reset_clients()
        h = Harness(Client(app_module.app, stage_name="test"), backend, mgmt, lambdas, dynamodb, table)
        handler = _InternalErrors(h.internal_errors)
        logging.getLogger("chalicelib").addHandler(handler)
        for cid in (SENDER, PEER):
            conn = Connection(
                cid,
                channel_key("booking", "1"),
                "chat",
                token="tok",
                created_at=1,
                ttl=99_999_999_999,
                booking_id="1",
                endpoint=mgmt.endpoint,
            )
            dynamodb.put_item(TableName=table, Item=to_item(conn))
            mgmt.open.add(cid)
        backend.routes[MESSAGE_PATH] = echo
        backend.routes["/api/ws/bookings/1/connect"] = Reply(200, {"user_id": "u1"})
        connected = h.invoke(
            "connect", events.connect_event(LISTENER, {"type": "booking", "booking_id": "1", "token": "t"})
        )
        assert connected["statusCode"] == 200
        mgmt.open.add(LISTENER)
        try:
            yield h
        finally:
            logging.getLogger("chalicelib").removeHandler(handler)
            reset_clients()
            for server in (backend, mgmt, lambdas):
                server.stop()
            dynamodb.delete_table(TableName=table)


def is_error_frame(frame: Any) -> bool:
    return (
        isinstance(frame, dict)
        and frame.get("type") == "error"
        and set(frame) <= {"type", "code", "message", "retryable", "ref"}
    )


def check_error(raw: bytes, sent: Any = None) -> dict[str, Any]:
    frame: dict[str, Any] = strict_json(raw)
    assert is_error_frame(frame), frame
    assert frame["code"] in CODES
    assert isinstance(frame["message"], str)
    assert frame["message"]
    assert isinstance(frame["retryable"], bool)
    assert len(raw) <= ERROR_FRAME_BOUND
    if "ref" in frame:  # only ever the sender's own id, and only one that can be echoed
        assert isinstance(sent, dict)
        assert frame["ref"] in (sent.get("id"), sent.get("client_id"))
        assert not isinstance(frame["ref"], str) or len(frame["ref"]) <= 128
        assert not isinstance(frame["ref"], int) or abs(frame["ref"]) < 2**53
    return frame


def check_frame(raw: bytes, sent: Any) -> None:
    frame = strict_json(raw)
    if is_error_frame(frame):
        check_error(raw, sent)
        return
    if isinstance(frame, dict) and "ref" in frame:  # the answer to a request: its id, exactly
        assert isinstance(sent, dict)
        assert frame.pop("ref") == sent.get("id")
    if frame == {"type": "pong"}:
        return
    # otherwise it must be exactly the backend's echo of what was sent, tagged with the booking
    assert frame == {"type": "message", "message": sent, "broadcast": True, **TAG}


json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_value = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
#: Text that cannot be encoded as UTF-8: lone surrogates (and halves of pairs) among any characters.
unencodable_text = st.lists(
    st.one_of(st.characters(), st.characters(categories=["Cs"]), st.sampled_from(["\ud83d", "\ude00", "é"])),
    max_size=30,
).map("".join)
any_text = st.one_of(st.text(max_size=40), unencodable_text)
unencodable_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=20,
)
unencodable_objects = st.dictionaries(any_text, unencodable_value, max_size=5)
#: ids a client might send: echoable, too long, not integers a browser holds, not text.
ids = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=10),
    st.text(min_size=120, max_size=140),
    unencodable_text,
    st.integers(),
    st.integers(min_value=2**52, max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
)


def deep(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


bodies = st.one_of(
    st.none(),
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    json_value.map(json.dumps),
    st.dictionaries(st.text(max_size=10), json_value, max_size=5).map(json.dumps),
    st.builds(
        lambda t, body, i: json.dumps({"type": t, "body": body, "id": i}),
        st.sampled_from(["ping", "message", "reaction", "", "PING"]),
        st.text(max_size=50),
        st.one_of(st.none(), st.integers(), st.text(max_size=10), st.booleans()),
    ),
    st.integers(min_value=1, max_value=3000).map(deep),
    st.integers(min_value=120 * 1024, max_value=140 * 1024).map(lambda n: json.dumps({"body": "x" * n})),
    st.sampled_from(["[" * 100_000, '{"a":' * 5000, "\ud800", "\x00", "{}", "[]", '{"type": "ping"}']),
    # lone surrogates: as JSON escapes, and raw in the event's text
    unencodable_objects.map(json.dumps),
    unencodable_objects.map(lambda o: json.dumps(o, ensure_ascii=False)),
    st.builds(
        lambda i, key, body: json.dumps({key: i, "body": body}),
        ids,
        st.sampled_from(["id", "client_id"]),
        any_text,
    ),
    st.builds(lambda n: json.dumps({"id": "i" * n, "body": "x" * (131_000 - n)}), st.integers(100, 131_000)),
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies, is_base64=st.booleans())
def test_fuzzed_default_bodies_are_answered_with_valid_frames(
    harness: Harness, body: str | None, is_base64: bool
) -> None:
    harness.mgmt.received.clear()
    harness.internal_errors.clear()
    response = harness.invoke("message", events.message_event(SENDER, body, is_base64=is_base64))
    assert response == {"statusCode": 200}
    assert harness.internal_errors == []
    posted = [*harness.mgmt.received.get(SENDER, []), *harness.mgmt.received.get(PEER, [])]
    assert harness.mgmt.received.get(SENDER), "the sender got no answer at all"
    try:
        sent = json.loads(body) if body is not None and not is_base64 else None
    except (ValueError, RecursionError):
        sent = None
    for raw in posted:
        check_frame(raw, sent)
    if isinstance(sent, dict) and has_lone_surrogate(sent):  # refused, and reaches no one else
        (only,) = harness.mgmt.received[SENDER]
        assert check_error(only, sent)["code"] == "invalid_message"
        assert not harness.mgmt.received.get(PEER)


query_values = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["chat", "booking", "notification", "feed", "1", "a" * 64, "a" * 65, ""]),
)
queries = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["type", "booking_id", "token", "x", "TYPE"]), query_values, max_size=4),
    st.dictionaries(st.text(max_size=10), st.text(max_size=30), max_size=3),
)
headers = st.dictionaries(
    st.sampled_from(["Sec-WebSocket-Protocol", "sec-websocket-protocol", "Origin", "X-Other"]),
    st.one_of(st.text(max_size=60), st.sampled_from(["bearer", "bearer, tok", "bearer,", " , bearer , x"])),
    max_size=3,
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(query=queries, extra_headers=headers, backend_status=st.sampled_from([200, 401, 403, 404, 500]))
def test_fuzzed_connects_answer_contract_statuses_and_items_only_on_200(
    harness: Harness, query: dict[str, str] | None, extra_headers: dict[str, str], backend_status: int
) -> None:
    for path in ("/api/chat/ws/{}/connect", "/api/ws/bookings/{}/connect"):
        booking = (query or {}).get("booking_id", "")
        harness.backend.routes[path.format(booking)] = Reply(
            backend_status, {"user_id": "u1"} if backend_status == 200 else {"detail": "no"}
        )
    harness.backend.routes["/api/notifications/ws/connect"] = Reply(
        backend_status, {"user_id": "u1"} if backend_status == 200 else {}
    )
    harness.internal_errors.clear()
    cid = "FZ" + uuid.uuid4().hex[:12] + "="
    event = events.connect_event(cid, query, extra_headers)
    response = harness.invoke("connect", event)
    assert harness.internal_errors == []
    assert response["statusCode"] in CONNECT_STATUSES
    found = harness.dynamodb.query(
        TableName=harness.table,
        IndexName="connection_id-index",
        KeyConditionExpression="connection_id = :c",
        ExpressionAttributeValues={":c": {"S": cid}},
    )["Items"]
    assert len(found) == (1 if response["statusCode"] == 200 else 0)
    if response["statusCode"] != 200:
        assert isinstance(response.get("body"), str)
        assert response["body"]
    else:
        item = found[0]
        assert item["connection_type"]["S"] in {"chat", "booking", "notification", "feed"}
        harness.dynamodb.delete_item(
            TableName=harness.table,
            Key={"booking_id": item["booking_id"], "connection_id": item["connection_id"]},
        )


# -- the backend's answers: lone surrogates replaced, never a crash -------------------------

#: Raw answers and what the sender must get: that object, or (None) an error frame.
_RAW_ANSWERS: list[tuple[bytes, dict[str, Any] | None]] = [
    # CESU-8, a surrogate's own bytes: decoded as one, then replaced
    (
        b'{"type":"message","body":"\xed\xa0\x80","broadcast":true}',
        {"type": "message", "body": "\ufffd", "broadcast": True},
    ),
    (
        b'{"type":"message","body":"\\udc80\\ud800\\ud83d\\ude00"}',
        {"type": "message", "body": "\ufffd\ufffd\U0001f600"},
    ),
    (b'{"type":"message","body":"\xff\xfe"}', None),  # not UTF-8
    (b'{"type":"message","n":' + b"9" * 5000 + b"}", None),  # more digits than Python parses
    (b'{"a":' * 300 + b"1" + b"}" * 300, None),
    (b'{"type":"message","x":Infinity}', None),  # not JSON a browser parses
    (b'{"type":"message","x":1e999}', None),
    (b"[]", None),
    (b"null", None),
    (b"", None),
    (b"\x00", None),
]
backend_answers = st.one_of(
    st.builds(
        lambda body, broadcast: Reply(200, {**body, "type": "message", "broadcast": broadcast}),
        unencodable_objects,
        st.booleans(),
    ),
    st.builds(
        lambda status, detail: Reply(status, {"detail": detail}),
        st.sampled_from([400, 401, 403, 404, 409, 422, 500, 503]),
        any_text,
    ),
    st.sampled_from(_RAW_ANSWERS).map(lambda pair: Reply(200, pair[0])),
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(reply=backend_answers)
def test_fuzzed_backend_answers_reach_clients_as_utf8_json(harness: Harness, reply: Reply) -> None:
    harness.mgmt.received.clear()
    harness.internal_errors.clear()
    harness.backend.routes[MESSAGE_PATH] = reply
    try:
        response = harness.invoke("message", events.message_event(SENDER, json.dumps({"body": "hi"})))
    finally:
        harness.backend.routes[MESSAGE_PATH] = echo
    assert response == {"statusCode": 200}
    assert harness.internal_errors == []
    to_sender = harness.mgmt.received.get(SENDER, [])
    to_peer = harness.mgmt.received.get(PEER, [])
    assert to_sender, "the sender got no answer at all"
    frames = [strict_json(raw) for raw in [*to_sender, *to_peer]]
    expected: dict[str, Any] | None = None
    if reply.status == 200 and isinstance(reply.body, dict):
        expected = scrubbed(json.loads(json.dumps(reply.body)))  # as it crossed the wire: pairs joined
    elif reply.status == 200:
        expected = dict(_RAW_ANSWERS)[reply.body]
    if expected is not None:  # recipients never reach a client; the booking is added when absent
        expected = tagged({k: v for k, v in expected.items() if k != "recipients"}, "1", "chat")
        assert [strict_json(raw) for raw in to_sender] == [expected]
        assert [strict_json(raw) for raw in to_peer] == (
            [expected] if expected.get("broadcast") is True else []
        )
    else:
        assert len(to_sender) == 1
        assert not to_peer
        check_error(to_sender[0])
    assert all(isinstance(f, dict) for f in frames)


# -- histories: a bad stored message never locks a booking ------------------------------------

history_messages = st.builds(
    lambda i, body, extra: {**extra, "id": i, "body": body},
    st.integers(0, 10**6),
    any_text,
    st.dictionaries(any_text, any_text, max_size=2),
)
histories = st.builds(
    lambda messages, pad, receipt: (
        {"type": "history", "messages": [{**m, "pad": "x" * pad} for m in messages]},
        receipt,
    ),
    st.lists(history_messages, min_size=1, max_size=8),
    st.sampled_from([0] * 7 + [30_000]),  # sometimes over 128 KB in all: delivered in parts
    st.one_of(
        st.none(), st.dictionaries(any_text, any_text, max_size=3).map(lambda r: {**r, "type": "receipt"})
    ),
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(history=histories)
def test_fuzzed_histories_are_delivered_as_utf8_json(
    harness: Harness, history: tuple[dict[str, Any], dict[str, Any] | None]
) -> None:
    initial, receipt = history
    answer: dict[str, Any] = {"initial": initial}
    if receipt is not None:
        answer["receipt"] = receipt
    harness.backend.routes["/api/chat/ws/7/connect"] = Reply(200, answer)
    harness.internal_errors.clear()
    cid = "FH" + uuid.uuid4().hex[:12] + "="
    query = {"type": "chat", "booking_id": "7", "token": "t"}
    assert harness.invoke("connect", events.connect_event(cid, query)) == {"statusCode": 200}
    harness.mgmt.open.add(cid)
    try:
        (delivery,) = harness.lambdas.take("-deliver")
        result = harness.invoke("deliver", delivery)
        assert result["outcome"] == "delivered", result
        frames = [strict_json(raw) for raw in harness.mgmt.received.pop(cid, [])]
        assert all(len(raw) <= 128 * 1024 for raw in harness.mgmt.received.get(cid, []))
        if receipt is not None:
            assert frames.pop() == tagged(scrubbed(json.loads(json.dumps(receipt))), "7", "chat")
        expected = tagged(scrubbed(json.loads(json.dumps(initial))), "7", "chat")
        event("history: one frame" if len(frames) == 1 else "history: in parts")
        if len(frames) == 1:
            assert frames == [expected]
        else:
            assert [f["part"] for f in frames] == list(range(1, len(frames) + 1))
            assert [m for f in frames for m in f["messages"]] == expected["messages"]
        assert harness.internal_errors == []
    finally:
        harness.mgmt.open.discard(cid)
        assert harness.invoke("disconnect", events.disconnect_event(cid)) == {"statusCode": 200}


# -- pushes: a payload holding a lone surrogate is refused, and reaches no one ----------------

push_events = st.fixed_dictionaries(
    {
        "channel": st.one_of(
            st.just({"booking_id": "1"}),
            st.builds(lambda u: {"user_id": u}, st.one_of(unencodable_text, st.just("u1"))),
        ),
        "payload": st.one_of(unencodable_objects, unencodable_value),
    },
    optional={"exclude": st.lists(st.one_of(any_text, st.just(LISTENER)), max_size=3)},
).map(lambda e: {**e, "connection_type": "booking"})


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(event=push_events)
def test_fuzzed_pushes_reach_clients_as_utf8_json_or_are_refused(
    harness: Harness, event: dict[str, Any]
) -> None:
    harness.mgmt.received.clear()
    harness.internal_errors.clear()
    result = harness.invoke("push", event)
    assert harness.internal_errors == []
    json.dumps(result, ensure_ascii=False).encode("utf-8")  # the answer itself is text
    posted = harness.posted()
    if has_lone_surrogate(event["payload"]) or has_lone_surrogate(event["channel"]):
        assert result["error"]["code"] == "invalid_event"
        assert posted == {}
        return
    if not isinstance(event["payload"], dict) or event["channel"].get("user_id") == "":
        assert result["error"]["code"] == "invalid_event"
        return
    assert "error" not in result, result
    payload = event["payload"]
    if event["channel"] == {"booking_id": "1"}:  # from a booking's channel: tagged with it
        payload = tagged(payload, "1", "booking")
    for cid, frames in posted.items():
        assert [strict_json(raw) for raw in frames] == [payload], cid
    recipients = (
        {LISTENER} - set(event.get("exclude", [])) if event["channel"] == {"booking_id": "1"} else set()
    )
    assert set(posted) == recipients
    assert result["delivered"] == len(recipients)
