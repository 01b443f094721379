"""Fuzz: arbitrary $default bodies and $connect queries and headers never break the proxy.

Properties, for every generated case:
- the handler answers (no exception escapes, and none is caught as an internal error);
- $connect answers a status from the contract, and writes an item exactly when it answers 200;
- every frame the proxy sends is JSON and is either the backend's payload or a CONTRACT §1 error frame.

`make test` runs a quick subset; `make reliability` runs 10,000 cases per property
(``RELIABILITY_EXAMPLES`` overrides).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import app as app_module
from chalicelib.registry import Connection, item_for
from chalicelib.routes import channel_key
from chalicelib.schema import ensure_table
from tests import events
from tests.harness import UNSET_ENV, app_env, moto_client
from tests.standins import BackendStandIn, LambdaStandIn, ManagementApiStandIn, Reply

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


class Harness:
    def __init__(
        self, client: Client, backend: BackendStandIn, mgmt: ManagementApiStandIn, dynamodb: Any, table: str
    ) -> None:
        self.client, self.backend, self.mgmt, self.dynamodb, self.table = (
            client,
            backend,
            mgmt,
            dynamodb,
            table,
        )
        self.internal_errors: list[str] = []

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
        for key in UNSET_ENV:
            mp.delenv(key, raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        app_module.container.reset()
        h = Harness(Client(app_module.app, stage_name="test"), backend, mgmt, dynamodb, table)
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
            dynamodb.put_item(TableName=table, Item=item_for(conn))
            mgmt.open.add(cid)
        backend.routes["/api/chat/ws/1/message"] = echo
        try:
            yield h
        finally:
            logging.getLogger("chalicelib").removeHandler(handler)
            app_module.container.reset()
            for server in (backend, mgmt, lambdas):
                server.stop()
            dynamodb.delete_table(TableName=table)


def check_frame(raw: bytes, sent: Any) -> None:
    frame = json.loads(raw)
    if (
        isinstance(frame, dict)
        and frame.get("type") == "error"
        and set(frame) <= {"type", "code", "message", "retryable", "ref"}
    ):
        assert frame["code"] in CODES
        assert isinstance(frame["message"], str) and frame["message"]
        assert isinstance(frame["retryable"], bool)
        return
    if isinstance(frame, dict) and "ref" in frame:  # the answer to a request: its id, exactly
        assert isinstance(sent, dict) and frame.pop("ref") == sent.get("id")
    if frame == {"type": "pong"}:
        return
    # otherwise it must be exactly the backend's echo of what was sent
    assert frame == {"type": "message", "message": sent, "broadcast": True}


json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_value = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
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
        assert isinstance(response.get("body"), str) and response["body"]
    else:
        item = found[0]
        assert item["connection_type"]["S"] in {"chat", "booking", "notification", "feed"}
        harness.dynamodb.delete_item(
            TableName=harness.table,
            Key={"booking_id": item["booking_id"], "connection_id": item["connection_id"]},
        )
