"""The scenes of the fault scenarios (tests/reliability/test_faults.py), all on 127.0.0.1.

- ``Faults``: the local stack (a child process, ``--fault-injection``) with its
  backend a ``FaultBackend`` and its DynamoDB a ``DynamoFaultProxy`` in front of
  an embedded moto; ``open_faults`` starts and stops them all. It sets the
  Management API's fault rules and reads the table past the throttling proxy.
- ``Scene``: one booking's sockets, their frames counted by message id, and the
  invariants every scenario checks; ``scenario`` runs one, bounded.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from chalicelib.model import Connection
from chalicelib.routes import channel_key
from chalicelib.schema import to_item
from tests.e2e.support import Socket, StackProcess, open_socket, run
from tests.harness import moto_client, start_moto, wait_for
from tests.reliability.support import DynamoFaultProxy, FaultBackend, Tracker, pump, stack_alive

TABLE = "ws-proxy-reliability-connections"


@dataclass
class Faults:
    stack: StackProcess
    backend: FaultBackend
    dynamodb: DynamoFaultProxy
    moto_url: str

    def __post_init__(self) -> None:
        # read moto directly, past the throttling proxy; one client for the whole module
        self.moto = moto_client(self.moto_url)

    def management(self, *rules: dict[str, Any]) -> dict[str, Any]:
        """Replace the gateway's Management API fault rules (none: clear them)."""
        method = "PUT" if rules else "DELETE"
        data = json.dumps({"rules": list(rules)}).encode() if rules else None
        request = urllib.request.Request(
            self.stack.endpoints["faults"],
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, Any] = json.load(response)
        return answer

    def fault_state(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.stack.endpoints["faults"], timeout=10) as response:
            answer: dict[str, Any] = json.load(response)
        return answer

    def items(self, booking: str) -> set[str]:
        """Connection ids in the channel's partition, read from moto directly (not throttled)."""
        client = self.moto
        page = client.query(
            TableName=TABLE,
            KeyConditionExpression="booking_id = :b",
            ExpressionAttributeValues={":b": {"S": channel_key("booking", booking)}},
            ConsistentRead=True,
        )
        return {item["connection_id"]["S"] for item in page.get("Items", [])}

    def put_stale_item(self, booking: str, connection_id: str) -> None:
        """An item whose $disconnect never ran (best-effort in AWS)."""
        client = self.moto
        now = int(time.time())
        ghost = Connection(
            connection_id,
            channel_key("booking", booking),
            "chat",
            token="ghost",
            created_at=now,
            ttl=now + 3600,
            booking_id=booking,
            endpoint=self.stack.management,
        )
        client.put_item(TableName=TABLE, Item=to_item(ghost))


@contextmanager
def open_faults() -> Iterator[Faults]:
    """moto, the fault servers and the stack, started; each stopped on the way out."""
    with start_moto() as moto_url:
        backend = FaultBackend()
        dynamodb = DynamoFaultProxy(moto_url)
        stack = None
        try:
            stack = StackProcess(
                "reliability-faults",
                "--backend-url",
                backend.url,
                "--dynamodb-endpoint",
                dynamodb.url,
                "--table",
                TABLE,
                "--fault-injection",
            )
            yield Faults(stack, backend, dynamodb, moto_url)
        finally:
            if stack is not None:
                status = stack.stop()
                assert status == 0, f"the stack did not stop cleanly ({status}):\n{stack.output[-3000:]}"
            dynamodb.stop()
            backend.stop()


def clear(faults: Faults) -> None:
    """No fault rules, no throttling, the backend listening."""
    faults.management()
    faults.dynamodb.clear()
    if not faults.backend.listening:
        faults.backend.up()


@dataclass
class Member:
    name: str
    sock: Socket
    connection_id: str


class Scene:
    """One booking's sockets, their frames counted by message id, and the invariants."""

    def __init__(self, env: Faults, session: aiohttp.ClientSession) -> None:
        self.env = env
        self.stack = env.stack
        self.session = session
        self.booking = "rel-" + uuid.uuid4().hex[:10]
        self.tracker = Tracker()
        self.stop = asyncio.Event()
        self.members: dict[str, Member] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.since = len(self.stack.output)

    async def join(self, *names: str) -> list[Member]:
        joined = []
        for name in names:
            url = self.stack.ws_url(type="chat", booking_id=self.booking, token=name)
            sock = await open_socket(self.session, url)
            receipt = await sock.recv(10)
            assert receipt["type"] == "receipt", receipt
            member = Member(name, sock, str(receipt["connection_id"]))
            self.members[name] = member
            self.tracker.add(name)
            self.tasks.append(asyncio.create_task(pump(name, sock, self.tracker, self.stop)))
            joined.append(member)
        return joined

    async def send(self, name: str, fault: str | None = None) -> str:
        message_id = uuid.uuid4().hex[:12]
        frame: dict[str, Any] = {"id": message_id, "t": time.perf_counter()}
        if fault is not None:
            frame["fault"] = fault
        await self.members[name].sock.send(frame)
        return message_id

    async def delivered(self, ids: list[str], to: list[str], timeout: float = 20.0) -> None:
        await wait_for(
            lambda: all(self.tracker.counts[n][i] >= 1 for n in to for i in ids),
            timeout,
            f"every broadcast {ids} reaching {to}",
        )

    async def error_for(self, name: str, message_id: str, timeout: float = 20.0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((e for e in self.tracker.errors[name] if e.get("ref") == message_id), None)

        await wait_for(lambda: found() is not None, timeout, f"{name} told why {message_id} failed")
        frame = found()
        assert frame is not None
        return frame

    async def settle(self, names: list[str]) -> None:
        """A ping round trip on each socket: whatever the proxy queued before it has arrived."""
        before = {n: self.tracker.others[n].count({"type": "pong"}) for n in names}
        for n in names:
            await self.members[n].sock.send({"type": "ping"})
        await wait_for(
            lambda: all(self.tracker.others[n].count({"type": "pong"}) > before[n] for n in names),
            15,
            f"pongs for {names}",
        )

    def exactly_once(self, ids: list[str], live: list[str], absent: Sequence[str] = ()) -> None:
        for n in live:
            for i in ids:
                assert self.tracker.counts[n][i] == 1, f"{n} got {i} {self.tracker.counts[n][i]} times"
        for n in absent:
            for i in ids:
                assert self.tracker.counts[n][i] == 0, f"{n} got {i} {self.tracker.counts[n][i]} times"

    def no_errors(self, names: list[str]) -> None:
        for n in names:
            assert not self.tracker.errors[n], f"{n} got error frames {self.tracker.errors[n]}"

    async def items_are(self, expected: set[str], timeout: float = 15.0) -> None:
        await wait_for(
            lambda: self.env.items(self.booking) == expected,
            timeout,
            f"channel items == {sorted(expected)} (now {sorted(self.env.items(self.booking))})",
        )

    async def finish(self) -> None:
        """Close the sockets; the items go; no crash, and a new socket still gets its pong."""
        for m in self.members.values():
            if not m.sock.ws.closed:
                await m.sock.close()
        self.stop.set()
        await asyncio.gather(*self.tasks)
        await self.items_are(set())
        probe = await open_socket(
            self.session, self.stack.ws_url(type="chat", booking_id=self.booking, token="p")
        )
        assert (await probe.recv(10))["type"] == "receipt"
        await probe.send({"type": "ping"})
        assert await probe.recv(10) == {"type": "pong"}
        await probe.close()
        await self.items_are(set())
        stack_alive(self.stack, self.since)


def scenario(env: Faults, body: Callable[[Scene], Awaitable[None]], timeout: float = 60.0) -> None:
    """Run ``body`` on a new booking's scene, then check what every scenario must leave behind."""

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            scene = Scene(env, session)
            try:
                await body(scene)
            finally:
                scene.stop.set()
            await scene.finish()

    run(go, timeout)


def assert_error(frame: dict[str, Any], code: str, retryable: bool) -> None:
    assert frame["type"] == "error"
    assert frame["code"] == code, frame
    assert frame["retryable"] is retryable, frame
    assert isinstance(frame["message"], str)
    assert frame["message"]
