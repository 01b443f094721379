"""What the work notes goes into its handler's one summary record; outside a handler, a line of its own."""

from __future__ import annotations

import logging
import threading

import pytest

from chalicelib.summary import HandlerRun, note


def summaries(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "summary", False) is True]


def test_notes_are_fields_of_the_summary_record(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chalicelib")
    with HandlerRun("$default") as run:
        note("backend_calls", "backend call", {"path": "/a", "status": 200, "duration_ms": 1.0})
        note("backend_calls", "backend call", {"path": "/b", "status": 401, "duration_ms": 2.0})
        note("fanouts", "fan-out", {"channel": "booking#1", "delivered": 2})
        run.result = {"statusCode": 200}
    assert [r.getMessage() for r in caplog.records] == ["message"]
    (record,) = summaries(caplog)
    assert [call["path"] for call in vars(record)["backend_calls"]] == ["/a", "/b"]
    assert vars(record)["fanouts"] == [{"channel": "booking#1", "delivered": 2}]


def test_a_note_outside_a_handler_or_on_another_thread_is_a_line_of_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chalicelib")
    note("fanouts", "fan-out", {"channel": "booking#1", "delivered": 2})
    with HandlerRun("push") as run:
        elsewhere = threading.Thread(target=note, args=("fanouts", "fan-out", {"channel": "feed#"}))
        elsewhere.start()
        elsewhere.join()
        run.result = {}
    lines = [r for r in caplog.records if r.getMessage() == "fan-out"]
    assert [vars(r)["channel"] for r in lines] == ["booking#1", "feed#"]
    (record,) = summaries(caplog)
    assert "fanouts" not in vars(record)
    note("backend_calls", "backend call", {"path": "/c"})  # the run is over: a line again
    assert caplog.records[-1].getMessage() == "backend call"
