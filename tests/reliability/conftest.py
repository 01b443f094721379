"""A pass/fail line per scenario, the fuzz sizes and the load figures, at the end of every run.

Printed in the terminal summary and written to ``test-artifacts/reliability-summary.json``
(``make reliability`` and ``make test`` alike).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from tests.e2e.support import ARTIFACTS
from tests.reliability import summary

_PREFIX = "tests/reliability/"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.nodeid.startswith(_PREFIX):
        return
    outcome, seconds = summary.OUTCOMES.get(report.nodeid, ("passed", 0.0))
    seconds += report.duration
    counts = report.when == "call" or report.outcome != "passed"
    if counts and (outcome == "passed" or report.outcome == "failed"):
        outcome = report.outcome
    summary.OUTCOMES[report.nodeid] = (outcome, seconds)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not summary.OUTCOMES:
        return
    write = terminalreporter.write_line
    terminalreporter.section("reliability")
    examples = os.environ.get("RELIABILITY_EXAMPLES", "150")
    full = os.environ.get("RELIABILITY_FULL") == "1"
    write(f"size: {'full' if full else 'quick subset'}; fuzz examples per property: {examples}")
    labels = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}
    for nodeid, (outcome, seconds) in summary.OUTCOMES.items():
        write(f"{labels.get(outcome, outcome.upper()):<5} {nodeid.removeprefix(_PREFIX)}  ({seconds:.1f} s)")
    if summary.LOAD:
        load = summary.LOAD
        write(
            f"load: {load['sockets']} sockets, {load['bookings']} bookings, {load['messages']} messages, "
            f"{load['deliveries']}/{load['expected_deliveries']} deliveries; lost {load['lost']}, "
            f"duplicated {load['duplicated']}, misrouted {load['misrouted']}; "
            f"p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms; "
            f"{load['wall_s']} s ({load['messages_per_s']} messages/s)"
        )
    ARTIFACTS.mkdir(exist_ok=True)
    record = {
        "full": full,
        "fuzz_examples_per_property": int(examples),
        "tests": {
            k.removeprefix(_PREFIX): {"outcome": o, "seconds": round(s, 2)}
            for k, (o, s) in summary.OUTCOMES.items()
        },
        "load": summary.LOAD,
    }
    (ARTIFACTS / "reliability-summary.json").write_text(json.dumps(record, indent=2) + "\n")
