"""The chat through real sockets: handshake rules, ordering, fan-out, reactions, errors."""

from __future__ import annotations

import re

import aiohttp
import pytest

from tests.e2e.support import (
    StackProcess,
    join_chat,
    new_booking,
    open_socket,
    run,
    token,
)

pytestmark = pytest.mark.e2e


def test_history_comes_first_then_the_receipt(local_stack: StackProcess) -> None:
    booking = new_booking()

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            url = local_stack.ws_url(type="chat", booking_id=booking, token=token(local_stack, "alice"))
            sock = await open_socket(session, url)
            history = await sock.recv()
            receipt = await sock.recv()
            assert history["type"] == "history"
            assert history["thread"]["booking_id"] == booking
            assert [m["user_id"] for m in history["messages"]] == ["host"]  # the seeded welcome
            assert receipt["type"] == "receipt"
            assert receipt["user_id"] == "alice"
            assert receipt["thread_id"] == history["thread"]["id"]
            await sock.close()

    run(scenario)


def test_a_message_reaches_everyone_in_the_booking_and_no_one_elsewhere(local_stack: StackProcess) -> None:
    booking, elsewhere = new_booking(), new_booking()

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            alice, _ = await join_chat(session, local_stack, "alice", booking)
            bob, _ = await join_chat(session, local_stack, "bob", booking)
            carol, _ = await join_chat(session, local_stack, "carol", elsewhere)
            await alice.send({"body": "Hello Bob", "client_id": "c-1"})
            to_alice = await alice.recv()
            to_bob = await bob.recv()
            assert to_alice == to_bob
            assert to_alice["type"] == "message"
            assert to_alice["message"]["body"] == "Hello Bob"
            assert to_alice["message"]["user_id"] == "alice"
            assert to_alice["message"]["client_id"] == "c-1"
            await carol.assert_nothing_pending()
            # The message is in the history of whoever joins next.
            dave, _ = await join_chat(session, local_stack, "dave", booking)
            await dave.assert_nothing_pending()
            for sock in (alice, bob, carol, dave):
                await sock.close()

    run(scenario)


def test_reactions_are_broadcast_to_the_booking(local_stack: StackProcess) -> None:
    booking = new_booking()

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            alice, _ = await join_chat(session, local_stack, "alice", booking)
            bob, _ = await join_chat(session, local_stack, "bob", booking)
            await alice.send({"body": "Check-in at 3?"})
            message_id = (await alice.recv())["message"]["id"]
            await bob.recv()
            await bob.send({"type": "reaction", "emoji": "❤️", "message_id": message_id})
            for sock in (alice, bob):
                frame = await sock.recv()
                assert frame["type"] == "reaction"
                assert frame["message_id"] == message_id
                assert frame["reactions"] == {"❤️": ["bob"]}
            await alice.close()
            await bob.close()

    run(scenario)


def test_ping_is_answered_by_the_proxy(local_stack: StackProcess) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            sock, _ = await join_chat(session, local_stack, "alice", new_booking())
            await sock.send({"type": "ping"})
            assert await sock.recv() == {"type": "pong"}
            await sock.close()

    run(scenario)


def test_invalid_frames_are_answered_with_error_frames(local_stack: StackProcess) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            sock, _ = await join_chat(session, local_stack, "alice", new_booking())
            for raw in ("not json", "[1, 2]", "   ", '"a string"'):
                await sock.ws.send_str(raw)
                frame = await sock.recv()
                assert frame["type"] == "error", raw
                assert frame["code"] == "invalid_message", raw
                assert frame["retryable"] is False
                assert isinstance(frame["message"], str)
                assert frame["message"]
            await sock.ws.send_bytes(b'{"body": "binary"}')
            assert (await sock.recv())["code"] == "invalid_message"
            # The backend refuses a reaction to a message that does not exist: the id is echoed.
            await sock.send({"type": "reaction", "emoji": "👍", "message_id": 10**9, "id": "r-7"})
            frame = await sock.recv()
            assert frame == {
                "type": "error",
                "code": "backend_error",
                "message": frame["message"],
                "retryable": False,
                "ref": "r-7",
            }
            await sock.close()

    run(scenario)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"type": "chat", "booking_id": "1", "token": "not-a-jwt"}, 401),
        ({"type": "chat", "booking_id": "1"}, 401),
        ({"type": "chat", "token": "x"}, 401),  # no booking: the user's socket, its token refused
        ({"type": "booking", "token": "x"}, 400),
        ({"type": "chat", "booking_id": "1", "token": "x", "since": "last"}, 400),
        ({"type": "chat", "booking_id": "no spaces allowed", "token": "x"}, 400),
        ({"type": "carrier-pigeon", "booking_id": "1", "token": "x"}, 400),
    ],
)
def test_a_refused_connect_fails_the_handshake_with_its_status(
    local_stack: StackProcess, query: dict[str, str], status: int
) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(local_stack.ws_url(**query))
            assert refused.value.status == status

    run(scenario)


def test_the_bearer_subprotocol_carries_the_token_and_is_echoed(local_stack: StackProcess) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            url = local_stack.ws_url(type="chat", booking_id=new_booking())
            sock = await open_socket(session, url, protocols=("bearer", token(local_stack, "bob")))
            assert sock.ws.protocol == "bearer"
            assert (await sock.recv())["type"] == "history"
            assert (await sock.recv())["user_id"] == "bob"
            await sock.close()

    run(scenario)


def test_a_frame_over_128_kb_closes_the_socket_with_1009(local_stack: StackProcess) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            sock, connection_id = await join_chat(session, local_stack, "alice", new_booking())
            await sock.send({"body": "x" * 200 * 1024})
            msg = await sock.ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert msg.data == 1009
            local_stack.wait_for_log(rf"\$disconnect +{re.escape(connection_id)} .*close=1009")

    run(scenario)
