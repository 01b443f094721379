"""Connection lifecycle rules: 410 during $connect, idle and lifetime limits, Ctrl-C.

These start further gateways (``--backend-url``, ``--dynamodb-endpoint``: the
session stack's DynamoDB, each with its own table) so that their settings do
not touch the other tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp
import pytest

from tests.e2e.support import StackProcess, gateway_only, open_socket, run, table_items, token
from tests.harness import wait_until

pytestmark = pytest.mark.e2e


class HeldBackend:
    """A backend whose connect answers only when the test releases it."""

    def __init__(self) -> None:
        self.connects: queue.Queue[str] = queue.Queue()
        self.release = threading.Event()
        held = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer: dict[str, Any]
                if self.path.endswith("/connect"):
                    held.connects.put(body["connection_id"])
                    held.release.wait(timeout=10)
                    answer = {"user_id": "held", "initial": {"type": "history", "messages": []}}
                else:
                    answer = {"type": "echo", "message": body["message"]}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def held_backend() -> Iterator[HeldBackend]:
    backend = HeldBackend()
    yield backend
    backend.close()


def test_the_management_api_answers_410_until_the_handshake_completes(
    local_stack: StackProcess, held_backend: HeldBackend
) -> None:
    stack = gateway_only("held", local_stack, held_backend.url)
    try:

        async def scenario() -> None:
            async with aiohttp.ClientSession() as session:
                url = stack.ws_url(type="chat", booking_id="held-1", token="opaque")
                connecting = asyncio.ensure_future(open_socket(session, url))
                connection_id = await asyncio.to_thread(held_backend.connects.get, timeout=10)
                management = stack.connection_url(connection_id)
                # $connect is running: the connection exists, but is not yet open.
                async with session.post(management, data=b'{"early": true}') as response:
                    assert response.status == 410
                    assert response.headers["x-amzn-ErrorType"] == "GoneException"
                async with session.get(management) as response:
                    assert response.status == 410
                assert not connecting.done()
                held_backend.release.set()
                sock = await connecting
                # The deferred delivery retried its 410s and got through once the handshake completed.
                history = {
                    "type": "history",
                    "messages": [],
                    "booking_id": "held-1",
                    "connection_type": "chat",
                }
                assert await sock.recv() == history
                async with session.post(management, data=b'{"late": true}') as response:
                    assert response.status == 200
                assert await sock.recv() == {"late": True}
                await sock.close()
                async with session.post(management, data=b"{}") as response:
                    assert response.status == 410

        run(scenario)
    finally:
        assert stack.stop() == 0


def test_idle_sockets_and_old_sockets_are_closed_with_1001(local_stack: StackProcess) -> None:
    stack = gateway_only(
        "timeouts", local_stack, local_stack.backend, "--idle-timeout", "0.6", "--max-lifetime", "1.5"
    )
    try:

        async def scenario() -> None:
            async with aiohttp.ClientSession() as session:
                url = stack.ws_url(type="feed")  # no token, no connect call: the quickest socket
                idle = await open_socket(session, url)
                busy = await open_socket(session, url)
                opened = time.monotonic()
                closed_at: dict[str, float] = {}

                async def keep_busy() -> int:
                    pongs = 0
                    while True:
                        if not busy.ws.closed:
                            # closed while sending: the close frame is waiting
                            with contextlib.suppress(aiohttp.ClientConnectionResetError):
                                await busy.send({"type": "ping"})
                        msg = await busy.ws.receive(timeout=5)
                        if msg.type is not aiohttp.WSMsgType.TEXT:
                            assert msg.type is aiohttp.WSMsgType.CLOSE
                            assert msg.data == 1001
                            closed_at["busy"] = time.monotonic() - opened
                            return pongs
                        pongs += 1
                        await asyncio.sleep(0.15)  # a quarter of the idle timeout

                async def stay_idle() -> None:
                    msg = await idle.ws.receive(timeout=10)
                    assert msg.type is aiohttp.WSMsgType.CLOSE
                    assert msg.data == 1001
                    closed_at["idle"] = time.monotonic() - opened

                pongs, _ = await asyncio.gather(keep_busy(), stay_idle())
                # The busy socket outlived the idle timeout by its activity, then hit its lifetime.
                assert closed_at["idle"] < closed_at["busy"]
                assert pongs >= 3

        run(scenario)
        # each $disconnect is logged after its close frame went out: wait for the second line
        wait_until(
            lambda: len(re.findall(r"\$disconnect .*close=1001", stack.output)) >= 2,
            what="both sockets' $disconnect logged",
        )
        assert len(re.findall(r"\$disconnect .*close=1001", stack.output)) == 2
        assert stack.output.count("closing: idle timeout") == 1
        assert stack.output.count("closing: maximum lifetime") == 1
    finally:
        assert stack.stop() == 0


def test_ctrl_c_closes_every_socket_and_stops_cleanly(local_stack: StackProcess) -> None:
    stack = gateway_only("shutdown", local_stack, local_stack.backend)
    booking = "shutdown-1"

    async def connect_then_stop() -> str:
        async with aiohttp.ClientSession() as session:
            url = stack.ws_url(type="chat", booking_id=booking, token=token(local_stack, "alice"))
            sock = await open_socket(session, url)
            await sock.recv()
            connection_id = str((await sock.recv())["connection_id"])
            status = asyncio.ensure_future(asyncio.to_thread(stack.stop))
            msg = await sock.ws.receive(timeout=15)
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert msg.data == 1001
            assert await status == 0
            return connection_id

    connection_id = run(connect_then_stop)
    assert re.search(rf"\$disconnect +{re.escape(connection_id)} removed close=1001", stack.output)
    assert stack.output.rstrip().endswith("stopped")
    # $disconnect ran before the exit: the item is gone from the (still running) table.
    items = table_items(local_stack, "ws-proxy-e2e-shutdown")
    assert connection_id not in {i["connection_id"]["S"] for i in items}
    wait_until(lambda: stack.proc.poll() is not None, what="the stack process exits")
