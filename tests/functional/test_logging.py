"""Logs: structured JSON lines with route and outcome; never a token, never a message body."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import traceback
import zlib
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
        assert {"cold_start", "function_name", "function_request_id"} <= set(record)  # Lambda's context
        assert "outcome" in record
        assert isinstance(record["duration_ms"], float)
    assert routes["$default"]["channel"] == "booking#1"
    # the backend call and the fan-out are fields of the summary, not lines of their own
    assert not [r for r in records if r.get("message") in ("backend call", "fan-out")]
    (call,) = routes["$default"]["backend_calls"]
    assert (call["path"], call["status"], type(call["duration_ms"])) == ("/api/chat/ws/1/message", 200, float)
    (fanout,) = routes["$default"]["fanouts"]
    assert (fanout["channel"], fanout["connections"], fanout["delivered"]) == ("booking#1", 1, 1)
    assert routes["$connect"]["backend_calls"][0]["path"] == "/api/chat/ws/1/connect"
    metrics = [r for r in records if "_aws" in r]
    names = {m["Name"] for r in metrics for d in r["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"ConnectionsOpened", "Messages", "FanOutSize"} <= names


# -- every logger at DEBUG ------------------------------------------------------

#: Loggers of the test's own neighbours, which run in this process only because the tests
#: put them here (moto's server); nothing of theirs runs in Lambda.
_NEIGHBOURS = ("moto", "werkzeug")
_BLOB = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")


def _record_text(record: logging.LogRecord) -> str:
    """Everything a handler could print of a record: message, every attribute, traceback."""
    parts = [record.getMessage()]
    parts += [f"{key}={value!r}" for key, value in vars(record).items() if key not in ("msg", "args")]
    if record.exc_info:
        parts.append("".join(traceback.format_exception(*record.exc_info)))
    return "\n".join(parts)


def _unpacked(text: str) -> str:
    """Base64 and zlib-compressed runs in ``text``, decoded (a body must not hide packed either)."""
    found = []
    for blob in _BLOB.findall(text):
        try:
            found.append(zlib.decompress(base64.b64decode(blob + "=" * (-len(blob) % 4))).decode())
        except (ValueError, zlib.error):
            continue
    return "\n".join(found)


@pytest.fixture
def every_record(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Root and every logger at DEBUG; the text of every record any handler would get."""
    captured: list[str] = []
    original = logging.Logger.callHandlers

    def call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
        if not record.name.startswith(_NEIGHBOURS):
            captured.append(_record_text(record))
        original(self, record)

    manager = logging.Logger.manager
    loggers = [logging.getLogger()] + [
        logging.getLogger(name)
        for name in (*list(manager.loggerDict), "botocore.endpoint", "botocore.parsers", "urllib3")
    ]
    levels = [(lg, lg.level, lg.disabled) for lg in loggers]
    logging.disable(logging.NOTSET)
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.disabled = False
    monkeypatch.setattr(logging.Logger, "callHandlers", call_handlers)
    try:
        yield captured
    finally:
        for lg, level, disabled in levels:
            lg.setLevel(level)
            lg.disabled = disabled


def run_handoffs(stack: Stack) -> list[int]:
    """Runs the chunks a fan-out handed to a later invocation; answers what each delivered."""
    return [
        stack.invoke(name, payload)["delivered"]
        for suffix, name in (("-push", "push"), ("-fanout", "fanout"))
        for payload in stack.lambdas.take(suffix)
    ]


def test_no_token_or_body_in_any_record_of_any_logger_at_debug(
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    log_stream: io.StringIO,
    every_record: list[str],
) -> None:
    monkeypatch.setenv("PUSH_CHUNK_SIZE", "1")  # push hands chunks off through the Lambda API
    history = {"type": "history", "messages": [{"id": 1, "body": BODY}]}
    chat_backend(stack.backend, initial=history, receipt={"type": "receipt", "last_read": 1})
    stack.connect("A1=", {"booking_id": "1", "token": SECRET})
    stack.connect("B1=", {"booking_id": "1"}, {"Sec-WebSocket-Protocol": f"bearer, {SECRET}"})
    stack.connect("G1=", {"booking_id": "1", "token": SECRET}, establish=False)  # gone before deliver
    assert len(stack.run_deliveries()) == 3
    stack.backend.routes["/api/chat/ws/1/message"] = lambda req: Reply(
        200, {"type": "message", "message": req["message"], "broadcast": True}
    )
    stack.send("A1=", {"body": BODY})
    assert run_handoffs(stack) == [1]
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(401, {"detail": "bad token"})
    stack.send("B1=", {"body": BODY})
    stack.send("B1=", "not json " + BODY)
    stack.backend.routes["/api/chat/ws/1/connect"] = Reply(401, {"detail": "bad token"})
    stack.connect("C1=", {"booking_id": "1", "token": SECRET})
    pushed = stack.invoke("push", {"channel": {"booking_id": "1"}, "payload": {"type": "note", "body": BODY}})
    assert pushed["queued"] == 1
    assert run_handoffs(stack) == [1]
    stack.disconnect("A1=")
    stack.disconnect("B1=")
    out, err = capfd.readouterr()
    records = "\n".join(every_record)
    # the run really was logged at DEBUG, by the libraries too
    assert "levelname='DEBUG'" in records
    assert '"route":"$connect"' in log_stream.getvalue()
    assert '"route":"push"' in log_stream.getvalue()
    assert [f["messages"][0]["body"] for f in stack.mgmt.frames("A1=")[:1]] == [BODY]
    everything = f"{records}\n{out}\n{err}\n{log_stream.getvalue()}"
    everything += "\n" + _unpacked(everything)
    assert SECRET not in everything
    assert BODY not in everything
