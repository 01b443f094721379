"""The local stack's Lambda runtime on its own: which functions it serves, and how it reads summaries.

A stand-in app module replaces ``app`` so that the records its handlers log,
and the functions it defines, are chosen by the test.
"""

from __future__ import annotations

import asyncio
import json
import logging
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_gateway.runtime import AppRuntime, Invocation, lambda_timeouts

app_logger = logging.getLogger("chalicelib.standin")


@pytest.fixture(autouse=True)
def info_level() -> Iterator[None]:
    previous = app_logger.level
    app_logger.setLevel(logging.INFO)
    yield
    app_logger.setLevel(previous)


def standin_app(**handlers: Any) -> types.ModuleType:
    module = types.ModuleType("standin_app")
    for name, handler in handlers.items():
        setattr(module, name, handler)
    return module


def invoke(runtime: AppRuntime, key: str, event: Any) -> Invocation:
    async def call() -> Invocation:
        return await runtime.invoke(key, f"ws-proxy-local-{key}", event)

    try:
        return asyncio.run(call())
    finally:
        runtime.close()


def test_a_summary_is_the_record_marked_summary_whatever_its_message() -> None:
    def push(event: Any, context: Any) -> dict[str, Any]:
        app_logger.info(
            "renamed: push finished", extra={"summary": True, "outcome": "pushed", "delivered": 3}
        )
        return {"delivered": 3}

    invocation = invoke(AppRuntime(standin_app(push=push), region="us-east-1", verbose=True), "push", {})
    assert invocation.summary == {"outcome": "pushed", "delivered": 3}
    assert invocation.result == {"delivered": 3}


@pytest.mark.parametrize("marker", [{}, {"summary": "yes"}, {"summary": 1}, {"summary": False}])
def test_records_not_marked_summary_true_are_not_summaries(marker: dict[str, Any]) -> None:
    def push(event: Any, context: Any) -> None:
        app_logger.info("fan-out progress", extra={**marker, "outcome": "partial", "delivered": 1})

    invocation = invoke(AppRuntime(standin_app(push=push), region="us-east-1", verbose=True), "push", {})
    assert invocation.summary == {}


def test_only_whitelisted_fields_of_a_summary_are_kept() -> None:
    def deliver(event: Any, context: Any) -> None:
        extra = {"summary": True, "outcome": "delivered", "frames": 2, "token": "secret", "body": "hello"}
        app_logger.info("deliver", extra=extra)

    runtime = AppRuntime(standin_app(deliver=deliver), region="us-east-1", verbose=True)
    assert invoke(runtime, "deliver", {}).summary == {"outcome": "delivered", "frames": 2}


def test_fanout_is_served_once_the_app_defines_it() -> None:
    seen: list[str] = []

    def fanout(event: Any, context: Any) -> dict[str, Any]:
        seen.append(context.function_name)
        app_logger.info("fanout", extra={"summary": True, "route": "fanout", "outcome": "delivered"})
        return {"delivered": 1}

    def deliver(event: Any, context: Any) -> None:
        return None

    with_fanout = AppRuntime(standin_app(deliver=deliver, fanout=fanout), region="us-east-1", verbose=True)
    assert with_fanout.function_key("ws-proxy-local-fanout") == "fanout"
    assert with_fanout.function_key(
        "arn:aws:lambda:us-east-1:123456789012:function:ws-proxy-dev-fanout:7"
    ) == ("fanout")
    assert with_fanout.function_key("ws-proxy-local-push") is None  # this stand-in has no push
    assert with_fanout.function_key("ws-proxy-local-fanout-v2") is None
    invocation = invoke(with_fanout, "fanout", {"chunk": []})
    assert seen == ["ws-proxy-local-fanout"]
    assert invocation.summary == {"outcome": "delivered"}

    without = AppRuntime(standin_app(deliver=deliver), region="us-east-1", verbose=True)
    try:
        assert without.function_key("ws-proxy-local-fanout") is None
        assert without.function_key("ws-proxy-local-deliver") == "deliver"
    finally:
        without.close()


def test_timeouts_come_from_the_stage_config(tmp_path: Path) -> None:
    config = {
        "lambda_timeout": 28,
        "stages": {"dev": {"lambda_functions": {"push": {"lambda_timeout": 300}, "fanout": {"memory": 1}}}},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert lambda_timeouts(path) == {"": 28.0, "push": 300.0}
    assert lambda_timeouts(tmp_path / "missing.json") == {"": 28.0}
    assert lambda_timeouts()["deliver"] == 30.0  # the project's own .chalice/config.json


def test_each_call_gets_its_function_timeout() -> None:
    remaining: list[int] = []

    def push(event: Any, context: Any) -> None:
        remaining.append(context.get_remaining_time_in_millis())

    invoke(AppRuntime(standin_app(push=push), region="us-east-1", verbose=True), "push", {})
    assert 290_000 < remaining[0] <= 300_000
