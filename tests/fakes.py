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
from chalicelib.model import Connection, FanOutResult, Member, PostOutcome


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
        token: bool = True,
        deadline: Deadline | None = None,
    ) -> Connection | None:
        self.lookups += 1
        now = int(self._clock())
        for conn in self.items.values():
            if conn.connection_id == connection_id and conn.ttl > now and not conn.subscription:
                return conn if token else replace(conn, token=None)
        return None

    def channel_ids(
        self, channel: str, connection_type: str | None, *, deadline: Deadline | None = None
    ) -> Iterator[str]:
        for cid, _, _ in self.channel_members(channel, connection_type):
            yield cid

    def channel_members(
        self, channel: str, connection_type: str | None, *, deadline: Deadline | None = None
    ) -> list[Member]:
        now = int(self._clock())
        return [
            Member(cid, conn.user_id, conn.endpoint)
            for (ch, cid), conn in sorted(self.items.items())
            if ch == channel
            and conn.ttl > now
            and (connection_type is None or connection_type in conn.in_types)
        ]

    def connection_items(
        self, connection_id: str, *, live: bool = True, deadline: Deadline | None = None
    ) -> list[Connection]:
        now = int(self._clock())
        return [
            conn
            for (_, cid), conn in sorted(self.items.items())
            if cid == connection_id and (conn.ttl > now or not live)
        ]

    def subscribe(self, item: Connection, *, deadline: Deadline | None = None) -> None:
        key = (item.channel, item.connection_id)
        there = self.items.get(key)
        if item.home is None:
            if there is None or there.subscription:
                raise UnknownConnection("this connection is not registered; reconnect")
            self.items[key] = replace(there, types=there.types | item.types)
        elif there is None:
            self.items[key] = item
        elif not there.subscription:
            raise UnknownConnection("this connection's own item is in that channel; reconnect")
        else:
            self.items[key] = replace(
                item,
                connection_type=there.connection_type,
                created_at=there.created_at,
                types=there.types | item.types,
            )

    def unsubscribe(
        self, channel: str, connection_id: str, connection_type: str, *, deadline: Deadline | None = None
    ) -> bool:
        there = self.items.get((channel, connection_id))
        if there is None or connection_type not in there.types:
            return False
        left = replace(there, types=there.types - {connection_type})
        if left.subscription and not left.types:
            del self.items[(channel, connection_id)]
        else:
            self.items[(channel, connection_id)] = left
        return True

    def remove_connection(self, connection_id: str, *, deadline: Deadline | None = None) -> list[Connection]:
        removed = self.connection_items(connection_id, live=False)
        for conn in removed:
            del self.items[(conn.channel, conn.connection_id)]
        return removed

    def count(self, channel: str, limit: int, *, deadline: Deadline | None = None) -> int:
        return min(limit, len(list(self.channel_ids(channel, None))))

    def get(self, channel: str, connection_id: str, *, deadline: Deadline | None = None) -> Connection | None:
        conn = self.items.get((channel, connection_id))
        return conn if conn is not None and conn.ttl > int(self._clock()) else None

    def endpoints(
        self, channel: str, connection_ids: Sequence[str], *, deadline: Deadline | None = None
    ) -> dict[str, str | None]:
        found = (self.get(channel, cid) for cid in connection_ids)
        return {conn.connection_id: conn.endpoint for conn in found if conn is not None}

    def update_token(self, conn: Connection, token: str, *, deadline: Deadline | None = None) -> Connection:
        stored = self.items.get((conn.channel, conn.connection_id))
        if stored is None or stored.token is None:
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
    #: The deadline each invocation was given.
    deadlines: list[Deadline | None] = field(default_factory=list)

    def invoke_async(
        self, function_name: str, payload: Mapping[str, Any], deadline: Deadline | None = None
    ) -> None:
        self.deadlines.append(deadline)
        if self.fail:
            raise RuntimeError("TooManyRequestsException")
        self.calls.append((function_name, payload))
