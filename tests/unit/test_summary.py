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


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_or_exit_is_not_swallowed_and_leaves_no_summary_running(
    caplog: pytest.LogCaptureFixture, interrupt: type[BaseException]
) -> None:
    caplog.set_level(logging.INFO, logger="chalicelib")
    answers: list[str] = []

    def fallback(outcome: str) -> dict[str, str]:
        answers.append(outcome)
        return {}

    with pytest.raises(interrupt), HandlerRun("push", on_failure=fallback):
        raise interrupt()
    assert answers == []
    note("fanouts", "fan-out", {"channel": "feed#"})  # no run is left running: a line of its own
    assert [r.getMessage() for r in caplog.records] == ["fan-out"]


def test_when_the_fallback_answer_fails_too_both_are_logged_and_the_last_resort_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chalicelib")

    def fallback(outcome: str) -> dict[str, str]:
        raise RuntimeError(f"no {outcome} answer either")

    with HandlerRun("$default", on_failure=fallback, last_resort={"statusCode": 200}) as run:
        raise RuntimeError("the work failed")
    assert run.answer() == {"statusCode": 200}
    failed, fallback_failed, summary = caplog.records
    assert (failed.getMessage(), failed.levelno) == ("message failed", logging.ERROR)
    assert (fallback_failed.getMessage(), fallback_failed.levelno) == (
        "the fallback answer failed too",
        logging.ERROR,
    )
    assert fallback_failed.exc_info is not None
    assert str(fallback_failed.exc_info[1]) == "no internal_error answer either"
    assert vars(summary)["summary"] is True
    assert vars(summary)["outcome"] == "internal_error"
