"""The reference backend's chat routes for one socket per user, called as FastAPI calls them.

The user-level connect route, recovery with ``since`` and the participants route
(docs/backend.md); the routes over HTTP are exercised through the local stack in
tests/e2e.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import HTTPException

from local_gateway.reference_backend.chat_routes import (
    chat_connect,
    chat_message,
    chat_participants,
    chat_user_connect,
)
from local_gateway.reference_backend.dev_tokens import DevTokens
from local_gateway.reference_backend.memory_store import MemoryStore
from local_gateway.reference_backend.models import ConnectBody, MessageBody, UserConnectBody
from local_gateway.reference_backend.settings import HISTORY_LENGTH, MAX_MISSED_MESSAGES

TOKENS = DevTokens("a development secret of 32 bytes or more")


def token(user: str) -> str:
    return TOKENS.issue(user, 60)[0]


def post(store: MemoryStore, booking: str, user: str, body: str) -> int:
    frame = {"body": body}
    answer = chat_message(
        MessageBody(connection_id="c", message=frame, token=token(user)), booking, store, TOKENS
    )
    message_id: int = answer["message"]["id"]
    return message_id


def connect(store: MemoryStore, booking: str, user: str, since: int | None = None) -> dict[str, Any]:
    answer = chat_connect(
        ConnectBody(connection_id="c", token=token(user), since=since), booking, store, TOKENS
    )
    assert answer.initial is not None
    return answer.initial


def test_a_resuming_client_gets_exactly_the_messages_after_since_in_order() -> None:
    store = MemoryStore()
    connect(store, "42", "alice")
    seen = post(store, "42", "bob", "one")
    missed = [post(store, "42", "bob", f"while away {n}") for n in range(3)]
    post(store, "7", "bob", "another booking")

    initial = connect(store, "42", "alice", since=seen)

    assert initial["since"] == seen
    assert [m["id"] for m in initial["messages"]] == missed


def test_since_at_the_last_message_gives_an_empty_history() -> None:
    store = MemoryStore()
    last = post(store, "42", "bob", "hello")
    initial = connect(store, "42", "alice", since=last)
    assert (initial["since"], initial["messages"]) == (last, [])


def test_without_since_the_history_is_the_last_messages_and_says_no_since() -> None:
    store = MemoryStore()
    for n in range(HISTORY_LENGTH + 5):
        post(store, "42", "bob", f"m{n}")
    initial = connect(store, "42", "alice")
    assert "since" not in initial
    assert len(initial["messages"]) == HISTORY_LENGTH


def test_a_cursor_past_the_last_message_gets_a_fresh_history() -> None:
    # ids start over when the backend restarts: a client's old cursor may lie beyond them.
    store = MemoryStore()
    last = post(store, "42", "bob", "after the restart")
    initial = connect(store, "42", "alice", since=last + 100)
    assert "since" not in initial
    assert [m["id"] for m in initial["messages"]][-1] == last


def test_a_client_that_missed_too_much_gets_a_fresh_history_instead() -> None:
    store = MemoryStore()
    first = post(store, "42", "bob", "first")
    for n in range(MAX_MISSED_MESSAGES + 1):
        post(store, "42", "bob", f"m{n}")
    initial = connect(store, "42", "alice", since=first)
    assert "since" not in initial
    assert len(initial["messages"]) == HISTORY_LENGTH


def test_a_negative_since_is_refused_by_the_body_model() -> None:
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        ConnectBody(connection_id="c", token="t", since=-1)


def test_the_user_level_connect_names_the_user_and_lists_their_conversations_with_unread_counts() -> None:
    store = MemoryStore()
    connect(store, "42", "alice")
    connect(store, "43", "alice")
    connect(store, "99", "carol")
    post(store, "42", "bob", "hi alice")
    post(store, "42", "bob", "are you there?")

    answer = chat_user_connect(UserConnectBody(connection_id="c", token=token("alice")), store, TOKENS)

    assert answer.user_id == "alice"
    assert answer.initial is not None
    assert answer.initial["type"] == "conversations"
    unread = {c["booking_id"]: c["unread"] for c in answer.initial["conversations"]}
    assert unread == {"42": 2, "43": 0}


def test_the_user_level_connect_refuses_a_missing_or_bad_token() -> None:
    store = MemoryStore()
    for bad in (
        None,
        "not-a-token",
        DevTokens("another development secret, 32 bytes+").issue("alice", 60)[0],
    ):
        with pytest.raises(HTTPException) as refused:
            chat_user_connect(UserConnectBody(connection_id="c", token=bad), store, TOKENS)
        assert refused.value.status_code == 401


def test_the_participants_are_the_host_and_everyone_who_joined_the_booking() -> None:
    store = MemoryStore()
    connect(store, "42", "alice")
    post(store, "42", "bob", "hello")
    assert chat_participants("42", store).user_ids == ["host", "alice", "bob"]
    assert chat_participants("43", store).user_ids == ["host"]


def test_broadcasts_name_the_bookings_parties_as_recipients() -> None:
    store = MemoryStore()
    connect(store, "42", "alice")
    post(store, "42", "bob", "hello")
    answer = chat_message(
        MessageBody(connection_id="c", message={"body": "again"}, token=token("alice")), "42", store, TOKENS
    )
    assert answer["broadcast"] is True
    assert answer["recipients"] == ["host", "alice", "bob"]
    reaction = {"type": "reaction", "emoji": "+1", "message_id": answer["message"]["id"]}
    reacted = chat_message(
        MessageBody(connection_id="c", message=reaction, token=token("bob")), "42", store, TOKENS
    )
    assert reacted["recipients"] == ["host", "alice", "bob"]
