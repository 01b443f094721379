"""API Gateway's rules, as the local gateway applies them, and the table they keep right."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time

import aiohttp
import boto3
import pytest

from tests.e2e.support import (
    ISSUED_TOKENS,
    ROOT,
    StackProcess,
    join_chat,
    new_booking,
    open_socket,
    post_json,
    run,
    table_items,
    token,
)
from tests.harness import wait_until

pytestmark = pytest.mark.e2e


async def call(session: aiohttp.ClientSession, method: str, url: str, data: bytes = b"") -> int:
    async with session.request(method, url, data=data) as response:
        await response.read()
        return response.status


def test_the_management_api_posts_reads_and_refuses_as_api_gateway(local_stack: StackProcess) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            sock, connection_id = await join_chat(session, local_stack, "alice", new_booking())
            url = local_stack.connection_url(connection_id)
            assert await call(session, "POST", url, b'{"type": "server-note"}') == 200
            assert await sock.recv() == {"type": "server-note"}
            async with session.get(url) as response:
                assert response.status == 200
                info = await response.json()
            assert info["identity"]["sourceIp"] == "127.0.0.1"
            assert info["connectedAt"].endswith("Z")
            # Above 128 KB: 413, and the socket stays usable.
            assert await call(session, "POST", url, b"x" * (128 * 1024 + 1)) == 413
            assert await call(session, "POST", url, b'"' + b"x" * (128 * 1024 - 2) + b'"') == 200
            assert len((await sock.ws.receive(timeout=5)).data) == 128 * 1024
            await sock.assert_nothing_pending()
            # Without the stage segment, as boto3 builds it for a stage-less endpoint.
            bare = f"{local_stack.gateway}/@connections/{url.rsplit('/', 1)[1]}"
            assert await call(session, "POST", bare, b'{"type": "bare"}') == 200
            assert await sock.recv() == {"type": "bare"}
            await sock.close()
            # After close: 410 GoneException, for every method.
            assert await call(session, "POST", url, b"{}") == 410
            assert await call(session, "GET", url) == 410
            assert await call(session, "DELETE", url) == 410
            # Never-seen ids are gone too.
            assert await call(session, "POST", local_stack.connection_url("Zm9vYmFyYmF6cXV4="), b"{}") == 410

    run(scenario)


def test_delete_closes_the_socket_and_fires_disconnect(local_stack: StackProcess) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            sock, connection_id = await join_chat(session, local_stack, "alice", new_booking())
            assert await call(session, "DELETE", local_stack.connection_url(connection_id)) == 204
            msg = await sock.ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE
            local_stack.wait_for_log(rf"\$disconnect +{re.escape(connection_id)} removed close=1000")
            wait_until(
                lambda: connection_id not in {i["connection_id"]["S"] for i in table_items(local_stack)},
                what="the deleted connection's item is removed",
            )

    run(scenario)


def test_a_killed_client_is_removed_from_the_table(local_stack: StackProcess) -> None:
    """A client that vanishes without a close frame: $disconnect still runs (close code 1006)."""
    booking = new_booking()
    client = (
        "import asyncio, json, sys, aiohttp\n"
        "async def main():\n"
        "    async with aiohttp.ClientSession() as s:\n"
        "        ws = await s.ws_connect(sys.argv[1])\n"
        "        await ws.receive(timeout=10)\n"
        "        print(json.loads((await ws.receive(timeout=10)).data)['connection_id'], flush=True)\n"
        "        await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    url = local_stack.ws_url(type="chat", booking_id=booking, token=token(local_stack, "mallory"))
    proc = subprocess.Popen([sys.executable, "-c", client, url], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        connection_id = proc.stdout.readline().strip()
        assert connection_id, "the client did not connect"
        live = {i["connection_id"]["S"] for i in table_items(local_stack)}
        assert connection_id in live
    finally:
        proc.kill()  # SIGKILL: no close frame
        proc.wait(timeout=10)
    local_stack.wait_for_log(rf"\$disconnect +{re.escape(connection_id)} .*close=1006")
    wait_until(
        lambda: connection_id not in {i["connection_id"]["S"] for i in table_items(local_stack)},
        what="the killed client's item is removed",
    )

    async def broadcast_still_works() -> None:
        async with aiohttp.ClientSession() as session:
            alice, _ = await join_chat(session, local_stack, "alice", booking)
            await alice.send({"body": "anyone there?"})
            assert (await alice.recv())["message"]["body"] == "anyone there?"
            await alice.close()

    run(broadcast_still_works)


def test_the_table_holds_exactly_the_live_connections(local_stack: StackProcess) -> None:
    booking = new_booking()

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            alice, alice_id = await join_chat(session, local_stack, "alice", booking)
            bob, _bob_id = await join_chat(session, local_stack, "bob", booking)
            carol, carol_id = await join_chat(session, local_stack, "carol", new_booking())
            await bob.close()

            def live_ids() -> set[str]:
                return {i["connection_id"]["S"] for i in table_items(local_stack)}

            # Earlier tests' sockets are all closed: the table converges to these two.
            wait_until(lambda: live_ids() == {alice_id, carol_id}, what="table == live sockets")
            items = {i["connection_id"]["S"]: i for i in table_items(local_stack)}
            assert items[alice_id]["booking_id"]["S"] == f"booking#{booking}"  # the channel key
            assert items[alice_id]["booking"]["S"] == booking
            assert items[alice_id]["connection_type"]["S"] == "chat"
            assert items[alice_id]["user_id"]["S"] == "alice"
            assert int(items[alice_id]["ttl"]["N"]) > time.time()
            await alice.close()
            await carol.close()
            wait_until(lambda: live_ids() == set(), what="the table empties")

    run(scenario)


def test_server_push_reaches_booking_sockets_and_not_chat_sockets(local_stack: StackProcess) -> None:
    booking = new_booking()

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            url = local_stack.ws_url(type="booking", booking_id=booking, token=token(local_stack, "alice"))
            watcher = await open_socket(session, url)
            assert (await watcher.recv())["booking"]["status"] == "pending"
            chat, _ = await join_chat(session, local_stack, "alice", booking)
            status, answer = await asyncio.to_thread(
                post_json, f"{local_stack.backend}/dev/bookings/{booking}/status", {"status": "confirmed"}
            )
            assert status == 200, answer
            assert answer["push"]["delivered"] == 1
            assert await watcher.recv() == {
                "type": "booking_status",
                "booking_id": booking,
                "status": "confirmed",
                "connection_type": "booking",  # the push named it: the proxy says so
            }
            await chat.assert_nothing_pending()
            await watcher.send({"type": "status"})
            assert (await watcher.recv())["booking"]["status"] == "confirmed"
            await watcher.close()
            await chat.close()

    run(scenario)


def test_tokens_never_reach_the_logs(local_stack: StackProcess) -> None:
    booking = new_booking()

    async def scenario() -> str:
        async with aiohttp.ClientSession() as session:
            sock, connection_id = await join_chat(session, local_stack, "trent", booking)
            await sock.send({"body": "my token is not here"})
            await sock.recv()
            await sock.close()
            return connection_id

    connection_id = run(scenario)
    local_stack.wait_for_log(rf"\$disconnect +{re.escape(connection_id)} ")
    output = local_stack.output
    assert ISSUED_TOKENS
    leaked = [t for t in ISSUED_TOKENS if t in output or t.split(".")[1] in output]
    assert not leaked, "a token appears in the stack's output"
    assert json.dumps("my token is not here")[1:-1] not in output  # nor message bodies


def test_boto3_speaks_to_the_emulated_apis_as_to_aws(local_stack: StackProcess) -> None:
    """The SDK's own clients: errors parse to their AWS exception types."""
    credentials = {"region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "y"}
    lam = boto3.client("lambda", endpoint_url=local_stack.gateway, **credentials)
    answer = lam.invoke(FunctionName="ws-proxy-local-push", Payload=json.dumps({"channel": "nope"}))
    assert answer["StatusCode"] == 200
    assert json.loads(answer["Payload"].read())["error"]["code"] == "invalid_event"
    queued = lam.invoke(FunctionName="ws-proxy-local-push", InvocationType="Event", Payload=b"{}")
    assert queued["StatusCode"] == 202
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="ws-proxy-local-websocket_connect", Payload=b"{}")

    management = boto3.client("apigatewaymanagementapi", endpoint_url=local_stack.management, **credentials)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            sock, connection_id = await join_chat(session, local_stack, "alice", new_booking())
            await asyncio.to_thread(
                management.post_to_connection, ConnectionId=connection_id, Data=b'{"n": 1}'
            )
            assert await sock.recv() == {"n": 1}
            info = await asyncio.to_thread(management.get_connection, ConnectionId=connection_id)
            assert info["Identity"]["SourceIp"] == "127.0.0.1"
            assert info["ConnectedAt"] <= info["LastActiveAt"]
            with pytest.raises(management.exceptions.PayloadTooLargeException):
                await asyncio.to_thread(
                    management.post_to_connection, ConnectionId=connection_id, Data=b"x" * 200_000
                )
            await sock.close()
            with pytest.raises(management.exceptions.GoneException):
                await asyncio.to_thread(management.post_to_connection, ConnectionId=connection_id, Data=b"{}")

    run(scenario)
