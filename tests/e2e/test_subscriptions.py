"""One socket per user through real sockets: a user-level socket in two bookings, each frame once."""

from __future__ import annotations

import aiohttp
import pytest

from tests.e2e.support import StackProcess, join_chat, new_booking, open_socket, run, table_items, token
from tests.harness import poll

pytestmark = pytest.mark.e2e


def test_a_user_level_socket_subscribes_sends_into_each_booking_and_leaves_no_item(
    local_stack: StackProcess,
) -> None:
    first, second = new_booking(), new_booking()

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            bob1, _ = await join_chat(session, local_stack, "bob", first)
            bob2, _ = await join_chat(session, local_stack, "bob", second)
            alice = await open_socket(
                session, local_stack.ws_url(type="chat", token=token(local_stack, "alice"))
            )
            conversations = await alice.recv()
            assert conversations["type"] == "conversations"
            alice_id = ""

            for booking in (first, second):
                await alice.send({"type": "subscribe", "booking_id": booking, "since": 0, "id": booking})
                subscribed = await alice.recv()
                assert subscribed == {
                    "type": "subscribed",
                    "booking_id": booking,
                    "connection_type": "chat",
                    "ref": booking,
                }
                history = await alice.recv()
                assert (history["type"], history["booking_id"], history["since"]) == ("history", booking, 0)
                receipt = await alice.recv()
                assert receipt["type"] == "receipt"
                alice_id = receipt["connection_id"]  # the reference backend names the connection

            await bob2.send({"body": "bob in the second"})
            frame = await alice.recv()
            assert (frame["booking_id"], frame["message"]["body"]) == (second, "bob in the second")
            assert "recipients" not in frame
            assert (await bob2.recv())["message"]["body"] == "bob in the second"

            await alice.send({"booking_id": first, "body": "alice in the first", "id": "m1"})
            mine = await alice.recv()
            assert (mine["ref"], mine["booking_id"], mine["message"]["user_id"]) == ("m1", first, "alice")
            theirs = await bob1.recv()
            assert theirs["message"]["body"] == "alice in the first"
            assert "ref" not in theirs

            await alice.send({"type": "presence", "booking_id": first, "id": "p"})
            presence = await alice.recv()
            assert (presence["users"], presence["connections"], presence["ref"]) == (["alice", "bob"], 2, "p")

            await alice.send({"type": "unsubscribe", "booking_id": second, "id": "u"})
            assert (await alice.recv())["type"] == "unsubscribed"
            await bob2.send({"body": "after alice left"})
            await bob2.recv()
            await alice.assert_nothing_pending()  # nothing of the second booking any more, nothing twice
            await bob1.assert_nothing_pending()

            await alice.close()
            gone = await poll(
                lambda: not [i for i in table_items(local_stack) if i["connection_id"]["S"] == alice_id], 10
            )
            assert gone, "every item of the closed socket is removed"
            for sock in (bob1, bob2):
                await sock.close()

    run(scenario)
