"""Helpers for the end-to-end tests: the local stack as a child process, real WebSocket clients.

The stack runs in its own process (``python -m local_gateway``), as a user runs
it: the environment it sets for the app never leaks into the test process,
and Ctrl-C (SIGINT) is how it stops. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from tests.harness import moto_client

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

#: Every token the tests obtained: none may ever appear in the stack's output.
ISSUED_TOKENS: list[str] = []
#: The local stack's flags for its three ports.
PORT_FLAGS = ("--port", "--backend-port", "--dynamodb-port")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def quiet_ports() -> list[str]:
    """``PORT_FLAGS`` and three free ports below the kernel's ephemeral range, as arguments.

    For a stack restarted on the ports it had: a port the kernel hands out (``--port 0``)
    may be handed to another test's socket while the stack is down, and the restart then
    fails with "address in use"; one below that range is never handed out.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):  # not Linux: the common default
        low = 32768
    ports: list[int] = []
    for _ in range(1000):
        port = random.randrange(10_000, low)
        if port not in ports and _port_free(port):
            ports.append(port)
        if len(ports) == len(PORT_FLAGS):
            return [arg for flag, port in zip(PORT_FLAGS, ports, strict=True) for arg in (flag, str(port))]
    raise RuntimeError("no three free ports below the ephemeral range")


class StackProcess:
    """``python -m local_gateway`` in a child process; its output kept for assertions."""

    def __init__(self, name: str, *args: str) -> None:
        self.name = name
        self._dir = Path(tempfile.mkdtemp(prefix="ws-proxy-e2e-"))
        ready = self._dir / "ready.json"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "local_gateway", "--ready-file", str(ready), *args]
        for flag in ("--port", "--backend-port", "--dynamodb-port"):
            if flag not in args:
                command += [flag, "0"]
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 60
        while not ready.exists() or not ready.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the stack did not start:\n{self.output}")
            time.sleep(0.05)
        self.endpoints: dict[str, str] = json.loads(ready.read_text())

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self._lines.append(line)

    @property
    def output(self) -> str:
        with self._lock:
            return "".join(self._lines)

    @property
    def gateway(self) -> str:
        return self.endpoints["gateway"]

    @property
    def backend(self) -> str:
        return self.endpoints["backend"]

    @property
    def management(self) -> str:
        return self.endpoints["management_api"]

    def connection_url(self, connection_id: str) -> str:
        return f"{self.management}/@connections/{quote(connection_id, safe='')}"

    def ws_url(self, **query: str) -> str:
        return self.endpoints["websocket"] + ("?" + urlencode(query) if query else "")

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output)
            if match:
                return match
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r} within {timeout} s:\n{self.output[-3000:]}")

    def stop(self, timeout: float = 20.0) -> int:
        """Ctrl-C, as a user would; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._reader.join(timeout=5)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"e2e-{self.name}.log").write_text(self.output)
        return int(self.proc.returncode)


def gateway_only(name: str, local_stack: StackProcess, backend_url: str, *args: str) -> StackProcess:
    """A further gateway with its own backend, sharing the session stack's DynamoDB (its own table)."""
    return StackProcess(
        name,
        "--backend-url",
        backend_url,
        "--dynamodb-endpoint",
        local_stack.endpoints["dynamodb"],
        "--table",
        f"ws-proxy-e2e-{name}",
        *args,
    )


def run[T](coro_fn: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    """Run one async scenario, bounded."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro_fn(), timeout)

    return asyncio.run(bounded())


def token(stack: StackProcess, user: str, ttl_seconds: int | None = None) -> str:
    """A development token from the reference backend (``ttl_seconds``: its lifetime; 0 is expired)."""
    body: dict[str, Any] = {"user_id": user}
    if ttl_seconds is not None:
        body["ttl_seconds"] = ttl_seconds
    request = urllib.request.Request(
        f"{stack.backend}/dev/token",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        value = str(json.load(response)["token"])
    ISSUED_TOKENS.append(value)
    return value


def post_json(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def new_booking() -> str:
    return "e2e-" + uuid.uuid4().hex[:10]


class Socket:
    """A real WebSocket client (aiohttp) with bounded, JSON-aware receives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type is aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg.type} {msg.data!r}"
        frame = json.loads(msg.data)
        assert isinstance(frame, dict)
        return frame

    async def recv_until(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame of type ``kind``, skipping others (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            if frame.get("type") == kind:
                return frame

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def assert_nothing_pending(self) -> None:
        """A ping's pong is the next frame: nothing else was queued for this socket."""
        await self.send({"type": "ping"})
        frame = await self.recv()
        assert frame == {"type": "pong"}, f"unexpected frame {frame}"

    async def close(self) -> None:
        await self.ws.close()


async def open_socket(session: aiohttp.ClientSession, url: str, *, protocols: tuple[str, ...] = ()) -> Socket:
    ws = await session.ws_connect(url, protocols=protocols, timeout=aiohttp.ClientWSTimeout(ws_close=5))
    return Socket(ws)


async def join_chat(
    session: aiohttp.ClientSession, stack: StackProcess, user: str, booking: str
) -> tuple[Socket, str]:
    """A chat socket past its history and receipt; its connection id (from the receipt)."""
    sock = await open_socket(session, stack.ws_url(type="chat", booking_id=booking, token=token(stack, user)))
    history = await sock.recv()
    assert history["type"] == "history"
    receipt = await sock.recv()
    assert receipt["type"] == "receipt"
    return sock, str(receipt["connection_id"])


def table_items(stack: StackProcess, table: str | None = None) -> list[dict[str, Any]]:
    client = moto_client(stack.endpoints["dynamodb"])
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table or stack.endpoints["table"]}
    while True:
        page = client.scan(**kwargs)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
