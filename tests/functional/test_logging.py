"""Logs: structured JSON lines with route and outcome; never a token, never a message body."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from tests.harness import Stack, chat_backend
from tests.standins import Reply

SECRET = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.SIGNATURE-abc123"
BODY = "my private message 4711"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """What the app's JSON log handler writes (the handler Lambda's stdout would get)."""
    buffer = io.StringIO()
    handlers = [h for h in logging.getLogger("ws-proxy").handlers if isinstance(h, logging.StreamHandler)]
    assert handlers, "the Powertools logger has no stream handler"
    previous = [h.setStream(buffer) for h in handlers]
    yield buffer
    for handler, stream in zip(handlers, previous, strict=True):
        handler.setStream(stream)


def test_no_token_or_message_body_in_any_log_line(
    stack: Stack,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    log_stream: io.StringIO,
) -> None:
    caplog.set_level(logging.DEBUG, logger="chalicelib")
    chat_backend(stack.backend)
    stack.connect("A1=", {"booking_id": "1", "token": SECRET})
    stack.connect("B1=", {"booking_id": "1"}, {"Sec-WebSocket-Protocol": f"bearer, {SECRET}"})
    stack.run_deliveries()
    stack.send("A1=", {"body": BODY})
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(401, {"detail": "bad token"})
    stack.send("A1=", {"body": BODY})
    stack.backend.routes["/api/chat/ws/1/connect"] = Reply(401, {"detail": "bad token"})
    stack.connect("C1=", {"booking_id": "1", "token": SECRET})
    stack.send("B1=", "not json " + BODY)
    stack.disconnect("A1=")
    out, err = capfd.readouterr()
    captured = out + err + caplog.text + log_stream.getvalue()
    assert '"route":"$connect"' in log_stream.getvalue()  # the logs were really captured
    assert '"route":"$default"' in log_stream.getvalue()
    assert SECRET not in captured
    assert BODY not in captured


def test_log_lines_are_json_with_route_connection_outcome_and_duration(
    stack: Stack, capfd: pytest.CaptureFixture[str], log_stream: io.StringIO
) -> None:
    chat_backend(stack.backend)
    stack.connect("A1=", {"booking_id": "1", "token": "t"})
    stack.send("A1=", {"body": "x"})
    out, _ = capfd.readouterr()
    lines = (log_stream.getvalue() + out).splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    routes = {r.get("route"): r for r in records if r.get("summary") is True}
    assert set(routes) == {"$connect", "$default"}
    for record in routes.values():
        assert record["connection_id"] == "A1="
        assert record["service"] == "ws-proxy"
        assert "outcome" in record and isinstance(record["duration_ms"], float)
    assert routes["$default"]["channel"] == "booking#1"
    fanout = [r for r in records if r.get("message") == "fan-out"]
    assert fanout and fanout[0]["delivered"] == 1
    metrics = [r for r in records if "_aws" in r]
    names = {m["Name"] for r in metrics for d in r["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"ConnectionsOpened", "Messages", "FanOutSize"} <= names
