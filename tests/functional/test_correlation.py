"""Requests and answers: ``ref`` on the one frame that answers an ``id``, and in-band ``auth``."""

from __future__ import annotations

import logging

import pytest

from tests.harness import Stack, chat_backend
from tests.standins import Reply

CHAT = {"type": "chat", "booking_id": "1", "token": "old-token"}


def join(stack: Stack, *cids: str, user: str = "42") -> None:
    chat_backend(stack.backend, user_id=user)
    for cid in cids:
        assert stack.connect(cid, CHAT)["statusCode"] == 200


def token_of(stack: Stack, cid: str) -> str | None:
    (item,) = [i for i in stack.items() if i["connection_id"]["S"] == cid]
    token = item.get("token")
    return None if token is None else str(token["S"])


def test_a_reply_carries_the_requests_id_as_ref(stack: Stack) -> None:
    join(stack, "A1=")
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(200, {"type": "ack"})
    stack.send("A1=", {"id": "r-1", "body": "x"})
    assert stack.mgmt.frames("A1=") == [
        {"type": "ack", "booking_id": "1", "connection_type": "chat", "ref": "r-1"}
    ]


def test_only_the_senders_copy_of_a_broadcast_carries_the_ref(stack: Stack) -> None:
    join(stack, "A1=", "B1=", "C1=")
    stack.send("A1=", {"id": 7, "body": "to all"})
    (mine,) = stack.mgmt.frames("A1=")
    assert mine["ref"] == 7
    assert mine["message"] == {"body": "to all"}
    for other in ("B1=", "C1="):
        (theirs,) = stack.mgmt.frames(other)
        assert theirs == {k: v for k, v in mine.items() if k != "ref"}


def test_a_split_reply_carries_the_ref_once_on_its_last_part(stack: Stack) -> None:
    join(stack, "A1=")
    history = {"type": "history", "messages": [{"i": i, "b": "x" * 1000} for i in range(300)]}
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(200, history)
    stack.send("A1=", {"id": "more", "type": "load_more"})
    parts = stack.mgmt.frames("A1=")
    assert len(parts) > 1
    assert [p.get("ref") for p in parts] == [None] * (len(parts) - 1) + ["more"]


def test_ping_with_an_id_gets_a_pong_with_its_ref(stack: Stack) -> None:
    join(stack, "A1=")
    stack.send("A1=", {"type": "ping", "id": "p"})
    assert stack.mgmt.frames("A1=") == [{"type": "pong", "ref": "p"}]


def test_client_id_still_names_errors_but_not_answers(stack: Stack) -> None:
    join(stack, "A1=", "B1=")
    stack.send("A1=", {"client_id": "c-1", "body": "x"})
    assert "ref" not in stack.mgmt.frames("A1=")[-1]
    stack.backend.routes["/api/chat/ws/1/message"] = Reply(422, {"detail": "no"})
    stack.send("A1=", {"client_id": "c-2", "body": "x"})
    assert stack.mgmt.frames("A1=")[-1]["ref"] == "c-2"


def test_auth_replaces_the_stored_token_and_later_messages_carry_it(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    join(stack, "A1=")
    caplog.set_level(logging.DEBUG)
    for name in ("botocore", "urllib3", "chalicelib"):
        caplog.set_level(logging.DEBUG, logger=name)
    stack.send("A1=", {"type": "auth", "token": "new-token-5f1c", "id": "a1"})
    assert stack.mgmt.frames("A1=") == [{"type": "authenticated", "ref": "a1"}]
    assert stack.backend.requests[-1] == (
        "/api/chat/ws/1/connect",
        {"connection_id": "A1=", "token": "new-token-5f1c"},
    )
    assert token_of(stack, "A1=") == "new-token-5f1c"
    stack.send("A1=", {"body": "after"})
    assert stack.backend.requests[-1][1]["token"] == "new-token-5f1c"
    loggers = {r.name.split(".")[0] for r in caplog.records}
    assert {"botocore", "chalicelib"} <= loggers, loggers  # the check below saw both, at DEBUG
    assert all("new-token-5f1c" not in r.getMessage() + str(r.__dict__) for r in caplog.records)


@pytest.mark.parametrize(("status", "code"), [(401, "unauthorized"), (403, "forbidden")])
def test_a_refused_auth_keeps_the_old_token(stack: Stack, status: int, code: str) -> None:
    join(stack, "A1=")
    stack.backend.routes["/api/chat/ws/1/connect"] = Reply(status, {"detail": "expired"})
    stack.send("A1=", {"type": "auth", "token": "bad", "id": "a2"})
    (frame,) = stack.mgmt.frames("A1=")
    assert frame["code"] == code
    assert frame["ref"] == "a2"
    assert "bad" not in frame["message"]
    assert token_of(stack, "A1=") == "old-token"


def test_auth_with_another_users_token_is_forbidden(stack: Stack) -> None:
    join(stack, "A1=", user="42")
    stack.backend.routes["/api/chat/ws/1/connect"] = Reply(200, {"user_id": "43"})
    stack.send("A1=", {"type": "auth", "token": "someone-else", "id": "a3"})
    assert stack.mgmt.frames("A1=")[-1]["code"] == "forbidden"
    assert token_of(stack, "A1=") == "old-token"


def test_auth_answers_unavailable_when_the_backend_is_down(stack: Stack) -> None:
    join(stack, "A1=")
    stack.backend.routes["/api/chat/ws/1/connect"] = Reply(503, {})
    stack.send("A1=", {"type": "auth", "token": "t2"})
    frame = stack.mgmt.frames("A1=")[-1]
    assert frame["code"] == "backend_unavailable"
    assert frame["retryable"] is True
    assert token_of(stack, "A1=") == "old-token"


@pytest.mark.parametrize("token", [None, "", 5, "x" * 9000])
def test_auth_without_a_usable_token_is_refused_before_the_backend(stack: Stack, token: object) -> None:
    join(stack, "A1=")
    calls = len(stack.backend.requests)
    frame = {"type": "auth", "id": "a4"} if token is None else {"type": "auth", "token": token, "id": "a4"}
    stack.send("A1=", frame)
    answer = stack.mgmt.frames("A1=")[-1]
    assert answer["code"] in ("invalid_message", "unauthorized")
    assert answer["ref"] == "a4"
    assert len(stack.backend.requests) == calls


def test_auth_on_a_feed_connection_is_explained(stack: Stack) -> None:
    assert stack.connect("F1=", {"type": "feed"})["statusCode"] == 200
    stack.send("F1=", {"type": "auth", "token": "t", "id": "f"})
    (frame,) = stack.mgmt.frames("F1=")
    assert frame["code"] == "invalid_message"
    assert "take no token" in frame["message"]
    assert stack.backend.requests == []
