"""Error replies always arrive: what is echoed as ``ref`` is bounded, refused proxy frames are counted."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib import protocol, wire
from tests.harness import Stack, chat_backend
from tests.standins import Reply

CHAT = {"type": "chat", "booking_id": "1", "token": "tok-a"}
MESSAGE_PATH = "/api/chat/ws/1/message"
#: Far below API Gateway's 128 KB: an error frame is a few hundred bytes at most.
ERROR_FRAME_BOUND = 1024
#: String ids up to this many characters are echoed as ref (docs/protocol.md).
MAX_REF_CHARS = 128


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def app_log() -> Iterator[_Records]:
    handler = _Records()
    logging.getLogger("chalicelib").addHandler(handler)
    yield handler
    logging.getLogger("chalicelib").removeHandler(handler)


@pytest.fixture
def refusing(stack: Stack) -> Stack:
    """A booking with sender A1= and peer B1=, whose backend refuses every message (400)."""
    chat_backend(stack.backend)
    for cid in ("A1=", "B1="):
        assert stack.connect(cid, CHAT)["statusCode"] == 200
    stack.backend.routes[MESSAGE_PATH] = Reply(400, {"detail": "refused"})
    return stack


def only_frame(stack: Stack, cid: str) -> dict[str, Any]:
    (raw,) = stack.mgmt.received[cid]
    assert len(raw) <= ERROR_FRAME_BOUND
    frame: dict[str, Any] = json.loads(raw)
    return frame


def test_the_reproduced_131030_byte_frame_gets_an_error_that_arrives(refusing: Stack) -> None:
    shell = len(json.dumps({"id": "", "body": "hi"}))
    body = json.dumps({"id": "x" * (131_030 - shell), "body": "hi"})
    assert len(body) == 131_030
    assert refusing.send("A1=", body) == {"statusCode": 200}
    frame = only_frame(refusing, "A1=")
    assert frame["code"] == "invalid_message"
    assert "ref" not in frame
    assert "128 characters" in frame["message"]
    assert MESSAGE_PATH not in refusing.backend.paths()
    assert [c for c in refusing.mgmt.calls if c[2] == 413] == []


@pytest.mark.parametrize(
    "echoed",
    ["x" * MAX_REF_CHARS, "é" * MAX_REF_CHARS, 2**53 - 1, -(2**53 - 1), 0, 1.5, ""],
)
def test_ids_that_can_be_echoed_are_echoed_on_the_error(refusing: Stack, echoed: Any) -> None:
    refusing.send("A1=", {"body": "hi", "id": echoed})
    frame = only_frame(refusing, "A1=")
    assert frame["code"] == "backend_error"
    assert frame["ref"] == echoed
    assert refusing.backend.paths().count(MESSAGE_PATH) == 1


@pytest.mark.parametrize(
    ("refused", "reason"),
    [
        ("x" * (MAX_REF_CHARS + 1), "128 characters"),
        (2**53, "2^53"),
        (-(2**53), "2^53"),
        (10**300, "2^53"),
    ],
)
def test_string_or_number_ids_that_cannot_be_echoed_are_refused_saying_why(
    refusing: Stack, refused: Any, reason: str
) -> None:
    refusing.send("A1=", {"body": "hi", "id": refused})
    frame = only_frame(refusing, "A1=")
    assert frame["code"] == "invalid_message"
    assert "ref" not in frame
    assert reason in frame["message"]
    assert MESSAGE_PATH not in refusing.backend.paths()


def test_a_long_client_id_is_served_but_not_echoed(refusing: Stack) -> None:
    refusing.send("A1=", {"body": "hi", "client_id": "c" * 120_000})
    frame = only_frame(refusing, "A1=")
    assert frame["code"] == "backend_error"
    assert "ref" not in frame
    assert refusing.backend.paths().count(MESSAGE_PATH) == 1


def test_a_proxy_frame_the_management_api_refuses_is_counted_and_logged(
    stack: Stack, app_log: _Records, capfd: pytest.CaptureFixture[str]
) -> None:
    stack.mgmt.open.add("P1=")
    stack.mgmt.max_post_bytes = 10  # API Gateway refuses even the pong (413)
    assert stack.send("P1=", {"type": "ping"}) == {"statusCode": 200}
    assert [c[2] for c in stack.mgmt.calls] == [413]
    refused = [r for r in app_log.records if r.getMessage() == "proxy frame refused"]
    assert len(refused) == 1
    assert refused[0].levelno == logging.WARNING
    assert getattr(refused[0], "error", None) == "too_large"
    assert getattr(refused[0], "connection_id", None) == "P1="
    too_large = [r for r in app_log.records if r.getMessage() == "post refused as too large"]
    assert [getattr(r, "bytes", None) for r in too_large] == [len(wire.encode(protocol.PONG))]
    out, _ = capfd.readouterr()
    metrics = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    assert [m["DeliveryFailures"] for m in metrics if "DeliveryFailures" in m] == [[1.0]]
