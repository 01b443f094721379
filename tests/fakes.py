"""In-memory fakes with the real interfaces, for use-case tests without I/O.

``FakeRegistry`` passes the same contract tests as ``ConnectionRegistry`` on
moto (tests/unit/test_registry.py), so tests that use it mean the same thing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from chalicelib.deadline import Deadline
from chalicelib.errors import ProxyError, UnknownConnection
from chalicelib.model import Connection, FanOutResult, PostOutcome


class FakeRegistry:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.items: dict[tuple[str, str], Connection] = {}
        self._clock = clock
        self.lookups = 0

    def put(self, conn: Connection, *, deadline: Deadline | None = None) -> None:
        self.items[(conn.channel, conn.connection_id)] = conn

    def delete(
        self,
        channel: str,
        connection_id: str,
        *,
        created_before: int | None = None,
        deadline: Deadline | None = None,
    ) -> bool:
        conn = self.items.get((channel, connection_id))
        if conn is not None and created_before is not None and conn.created_at >= created_before:
            return False
        self.items.pop((channel, connection_id), None)
        return True

    def find(
        self,
        connection_id: str,
        *,
        retry: bool = True,
        cached: bool = True,
        deadline: Deadline | None = None,
    ) -> Connection | None:
        self.lookups += 1
        now = int(self._clock())
        for conn in self.items.values():
            if conn.connection_id == connection_id and conn.ttl > now:
                return conn
        return None

    def channel_ids(
        self, channel: str, connection_type: str | None, *, deadline: Deadline | None = None
    ) -> Iterator[str]:
        now = int(self._clock())
        for (ch, cid), conn in sorted(self.items.items()):
            if ch == channel and conn.ttl > now and connection_type in (None, conn.connection_type):
                yield cid

    def get(self, channel: str, connection_id: str, *, deadline: Deadline | None = None) -> Connection | None:
        conn = self.items.get((channel, connection_id))
        return conn if conn is not None and conn.ttl > int(self._clock()) else None

    def endpoints(
        self, channel: str, connection_ids: Sequence[str], *, deadline: Deadline | None = None
    ) -> dict[str, str | None]:
        found = (self.get(channel, cid) for cid in connection_ids)
        return {conn.connection_id: conn.endpoint for conn in found if conn is not None}

    def update_token(self, conn: Connection, token: str, *, deadline: Deadline | None = None) -> Connection:
        if (conn.channel, conn.connection_id) not in self.items:
            raise UnknownConnection("this connection is not registered; reconnect")
        updated = replace(conn, token=token)
        self.items[(conn.channel, conn.connection_id)] = updated
        return updated


@dataclass
class FakeBackend:
    """Answers per path with a dict, or raises the ``ProxyError`` it was given."""

    answers: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def post(self, path: str, body: dict[str, Any], *, deadline: Deadline | None = None) -> dict[str, Any]:
        self.calls.append((path, body))
        answer = self.answers.get(path, ProxyError("no route", status=404))
        if isinstance(answer, ProxyError):
            raise answer
        result: dict[str, Any] = answer(body) if callable(answer) else answer
        return result


@dataclass
class FakeGateway:
    """Connections that are open receive; others answer GONE (or a scripted outcome)."""

    endpoint: str = "https://example.execute-api.us-east-1.amazonaws.com/development"
    open: set[str] = field(default_factory=set)
    scripted: dict[str, list[PostOutcome]] = field(default_factory=dict)
    received: dict[str, list[bytes]] = field(default_factory=dict)

    def post(self, connection_id: str, data: bytes, *, deadline: Deadline | None = None) -> PostOutcome:
        script = self.scripted.get(connection_id)
        if script:
            outcome = script.pop(0)
        else:
            outcome = PostOutcome.DELIVERED if connection_id in self.open else PostOutcome.GONE
        if outcome is PostOutcome.DELIVERED:
            self.received.setdefault(connection_id, []).append(data)
        return outcome

    def post_many(
        self,
        connection_ids: Any,
        data: bytes,
        *,
        on_gone: Callable[[str], None] | None = None,
        deadline: Deadline | None = None,
    ) -> FanOutResult:
        result = FanOutResult()
        for cid in connection_ids:
            outcome = self.post(cid, data)
            result.add(cid, outcome)
            if outcome is PostOutcome.GONE and on_gone:
                on_gone(cid)
        return result


@dataclass
class FakeInvoker:
    calls: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)
    fail: bool = False

    def invoke_async(self, function_name: str, payload: Mapping[str, Any]) -> None:
        if self.fail:
            raise RuntimeError("TooManyRequestsException")
        self.calls.append((function_name, payload))
