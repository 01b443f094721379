"""Load through the local stack: many sockets, many bookings, every broadcast exactly once.

Full size (``RELIABILITY_FULL=1``, ``make reliability``): 200 sockets across 20
bookings, 2,000 messages; the quick subset in ``make test``: 20 sockets across 2
bookings, 100 messages. Messages go round-robin from every socket, at most
``IN_FLIGHT`` at once (a message is in flight from its send until its sender
receives its own broadcast). Each receiver counts every broadcast by its
``client_id``: zero lost, zero duplicated, nothing delivered to another booking.
Delivery latency (send to each receiver's arrival) is reported, never asserted.
Everything is on 127.0.0.1, every wait is bounded, the whole run has a hard timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from chalicelib.routes import channel_key
from tests.e2e.support import ARTIFACTS, Socket, StackProcess, open_socket, run, table_items, token
from tests.harness import poll, wait_until
from tests.reliability import summary
from tests.reliability.support import stack_alive

pytestmark = pytest.mark.e2e
FULL = os.environ.get("RELIABILITY_FULL") == "1"
SOCKETS, BOOKINGS, MESSAGES = (200, 20, 2000) if FULL else (20, 2, 100)
IN_FLIGHT = 32
CONNECTING = 20
HARD_TIMEOUT = 600.0 if FULL else 90.0


@pytest.fixture(scope="module")
def load_stack() -> Iterator[StackProcess]:
    stack = StackProcess("reliability-load")
    yield stack
    status = stack.stop()
    assert status == 0, f"the stack did not stop cleanly ({status}):\n{stack.output[-3000:]}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def test_load_every_broadcast_reaches_every_socket_of_its_booking_exactly_once(
    load_stack: StackProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = load_stack
    since = len(stack.output)
    run_id = uuid.uuid4().hex[:6]
    bookings = [f"load-{run_id}-{b}" for b in range(BOOKINGS)]
    booking_of = [bookings[i % BOOKINGS] for i in range(SOCKETS)]
    tokens = [token(stack, f"user{i}") for i in range(SOCKETS)]
    members = {b: [i for i in range(SOCKETS) if booking_of[i] == b] for b in bookings}

    sent_at: dict[str, float] = {}
    sent_from: dict[str, int] = {}
    received: list[Counter[str]] = [Counter() for _ in range(SOCKETS)]
    latencies: list[float] = []
    errors: list[tuple[int, dict[str, Any]]] = []
    pongs = [0] * SOCKETS
    own: dict[str, asyncio.Event] = {}
    figures: dict[str, Any] = {}

    async def reader(i: int, sock: Socket, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                msg = await sock.ws.receive(timeout=0.2)
            except TimeoutError:
                continue
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return
            now = time.perf_counter()
            frame = json.loads(msg.data)
            if frame.get("type") == "message":
                client_id = str(frame["message"].get("client_id"))
                received[i][client_id] += 1
                if client_id in sent_at and received[i][client_id] == 1:
                    latencies.append(now - sent_at[client_id])
                if sent_from.get(client_id) == i:
                    own[client_id].set()
            elif frame.get("type") == "pong":
                pongs[i] += 1
            elif frame.get("type") == "error":
                errors.append((i, frame))

    async def scenario() -> None:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            gate = asyncio.Semaphore(CONNECTING)
            started = time.perf_counter()

            async def join(i: int) -> Socket:
                async with gate:
                    url = stack.ws_url(type="chat", booking_id=booking_of[i], token=tokens[i])
                    sock = await open_socket(session, url)
                    assert (await sock.recv(30))["type"] == "history"
                    assert (await sock.recv(30))["type"] == "receipt"
                    return sock

            sockets = await asyncio.gather(*(join(i) for i in range(SOCKETS)))
            figures["connect_s"] = round(time.perf_counter() - started, 2)
            stop = asyncio.Event()
            readers = [asyncio.create_task(reader(i, s, stop)) for i, s in enumerate(sockets)]
            in_flight = asyncio.Semaphore(IN_FLIGHT)
            plan: dict[int, list[str]] = {i: [] for i in range(SOCKETS)}
            for k in range(MESSAGES):
                client_id = f"{run_id}-{k}"
                plan[k % SOCKETS].append(client_id)
                sent_from[client_id] = k % SOCKETS
                own[client_id] = asyncio.Event()

            async def sender(i: int) -> None:
                for client_id in plan[i]:
                    async with in_flight:
                        sent_at[client_id] = time.perf_counter()
                        await sockets[i].send({"body": f"load {client_id}", "client_id": client_id})
                        await asyncio.wait_for(own[client_id].wait(), 60)

            started = time.perf_counter()
            await asyncio.gather(*(sender(i) for i in range(SOCKETS)))
            expected = sum(len(members[booking_of[sent_from[c]]]) for c in sent_from)

            def delivered() -> int:
                return sum(
                    1
                    for c, origin in sent_from.items()
                    for i in members[booking_of[origin]]
                    if received[i][c] >= 1
                )

            # bounded; whatever is still missing then is counted as lost below
            await poll(lambda: delivered() >= expected, 60)
            figures["wall_s"] = round(time.perf_counter() - started, 2)
            # A ping round trip on every socket: anything queued before it has arrived.
            before = list(pongs)
            for s in sockets:
                await s.send({"type": "ping"})
            await poll(lambda: all(p > b for p, b in zip(pongs, before, strict=True)), 30)
            stop.set()
            await asyncio.gather(*readers)
            for s in sockets:
                await s.close()
            figures["expected_deliveries"] = expected

    run(scenario, HARD_TIMEOUT)

    lost = duplicated = misrouted = 0
    for client_id, origin in sent_from.items():
        audience = set(members[booking_of[origin]])
        for i in range(SOCKETS):
            count = received[i][client_id]
            if i in audience:
                lost += count == 0
                duplicated += max(0, count - 1)
            else:
                misrouted += count
    figures.update(
        sockets=SOCKETS,
        bookings=BOOKINGS,
        messages=MESSAGES,
        in_flight=IN_FLIGHT,
        deliveries=len(latencies),
        lost=lost,
        duplicated=duplicated,
        misrouted=misrouted,
        errors=len(errors),
        p50_ms=round(percentile(latencies, 50) * 1000, 1) if latencies else None,
        p99_ms=round(percentile(latencies, 99) * 1000, 1) if latencies else None,
        max_ms=round(max(latencies) * 1000, 1) if latencies else None,
        mean_ms=round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
    )
    figures["messages_per_s"] = round(MESSAGES / figures["wall_s"], 1)
    summary.LOAD.update(figures)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "reliability-load.json").write_text(json.dumps(figures, indent=2) + "\n")
    with capsys.disabled():
        print(
            f"\n  load: {SOCKETS} sockets, {BOOKINGS} bookings, {MESSAGES} messages "
            f"({figures['expected_deliveries']} deliveries expected): lost {lost}, duplicated {duplicated}, "
            f"misrouted {misrouted}, errors {len(errors)}; latency p50 {figures['p50_ms']} ms, "
            f"p99 {figures['p99_ms']} ms; {figures['wall_s']} s ({figures['messages_per_s']} messages/s)"
        )

    assert not errors, f"error frames: {errors[:5]}"
    assert lost == 0, figures
    assert duplicated == 0, figures
    assert misrouted == 0, figures
    assert len(latencies) == figures["expected_deliveries"]
    # Every socket closed: every item is gone ($disconnect), and the stack never crashed.
    keys = {channel_key("booking", b) for b in bookings}

    def left() -> list[dict[str, Any]]:
        return [i for i in table_items(stack) if i["booking_id"]["S"] in keys]

    wait_until(lambda: not left(), 30, "every item removed after every socket closed")
    stack_alive(stack, since)
