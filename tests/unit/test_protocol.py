"""Pure protocol rules (docs/protocol.md): no I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib import protocol
from chalicelib.errors import Forbidden, InvalidMessage, TooLarge, Unauthorized
from chalicelib.routes import DEFAULT_ROUTES

LIMIT = protocol.MAX_MESSAGE_BYTES


def test_parse_connect_defaults_to_chat_and_reads_the_query_token() -> None:
    request = protocol.parse_connect({"booking_id": "b-1", "token": "t"}, {}, DEFAULT_ROUTES)
    assert (request.connection_type, request.booking_id, request.token) == ("chat", "b-1", "t")
    assert request.bearer_subprotocol is False


def test_subprotocol_header_is_case_insensitive_and_query_token_wins() -> None:
    request = protocol.parse_connect(
        {"booking_id": "1", "token": "q"}, {"sec-websocket-protocol": "bearer,s"}, DEFAULT_ROUTES
    )
    assert request.token == "q"
    assert request.bearer_subprotocol is True


def test_subprotocol_list_without_bearer_is_ignored() -> None:
    with pytest.raises(Unauthorized):
        protocol.parse_connect({"booking_id": "1"}, {"Sec-WebSocket-Protocol": "chat, t"}, DEFAULT_ROUTES)


def test_booking_id_is_ignored_for_types_that_do_not_use_it() -> None:
    request = protocol.parse_connect({"type": "feed", "booking_id": "?? bad"}, None, DEFAULT_ROUTES)
    assert request.booking_id is None


@pytest.mark.parametrize("bad", ["", "a" * 65, "1 2", "1/2", "ü", "1;DROP", "..", "%2F"])
def test_invalid_booking_ids_are_400(bad: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        protocol.parse_connect({"booking_id": bad, "token": "t"}, None, DEFAULT_ROUTES)
    assert info.value.status == 400


def test_origin_check() -> None:
    allowed = ("https://a.example",)
    protocol.check_origin({"Origin": "https://a.example"}, allowed)
    protocol.check_origin({}, ())
    with pytest.raises(Forbidden):
        protocol.check_origin({"origin": "https://b.example"}, allowed)
    with pytest.raises(Forbidden):
        protocol.check_origin({}, allowed)


@pytest.mark.parametrize(
    ("frame", "ref"),
    [
        ({"id": "a"}, "a"),
        ({"client_id": 5}, 5),
        ({"id": True}, None),
        ({"id": {"x": 1}}, None),
        ({"id": None, "client_id": "c"}, "c"),
        ([], None),
    ],
)
def test_reference_echoes_id_or_client_id(frame: object, ref: object) -> None:
    assert protocol.reference(frame) == ref


def test_error_frame_shape() -> None:
    assert protocol.error_frame("forbidden", "no", ref="r") == {
        "type": "error",
        "code": "forbidden",
        "message": "no",
        "retryable": False,
        "ref": "r",
    }
    assert "ref" not in protocol.error_frame("too_large", "big")


def test_parse_frame_limits_are_in_utf8_bytes() -> None:
    just_fits = '{"b":"' + "é" * ((LIMIT - 8) // 2) + '"}'
    assert len(just_fits.encode()) <= LIMIT
    protocol.parse_frame(just_fits)
    with pytest.raises(TooLarge):
        protocol.parse_frame('{"b":"' + "é" * (LIMIT // 2) + '"}')


def test_frames_nested_deeper_than_the_limit_are_invalid() -> None:
    limit = protocol.MAX_FRAME_DEPTH
    assert protocol.parse_frame('{"a":' * (limit - 1) + "1" + "}" * (limit - 1))
    assert protocol.parse_frame('{"a":[' * (limit // 2) + "1" + "]}" * (limit // 2))
    for depth in (limit + 1, 500):
        with pytest.raises(InvalidMessage, match="nested"):
            protocol.parse_frame('{"a":' * depth + "1" + "}" * depth)
    for depth in range(900, 1000, 10):  # near the recursion limit: parses or not, never a crash later
        with pytest.raises(InvalidMessage):
            protocol.parse_frame('{"a":' * depth + "1" + "}" * depth)
    with pytest.raises(InvalidMessage, match="nested"):
        protocol.parse_frame('{"a":' + "[" * limit + "]" * limit + "}")


def test_lone_surrogates_do_not_crash_the_size_check() -> None:
    with pytest.raises(InvalidMessage):
        protocol.parse_frame("\ud800")


def test_small_payload_is_one_frame_and_non_history_over_the_limit_raises() -> None:
    assert protocol.frames_for({"type": "message"}) == [b'{"type":"message"}']
    with pytest.raises(TooLarge):
        protocol.frames_for({"type": "message", "body": "x" * LIMIT})
    with pytest.raises(TooLarge):
        protocol.frames_for({"type": "history", "messages": [], "pad": "x" * LIMIT})
    with pytest.raises(TooLarge):
        protocol.frames_for([1] * LIMIT)


def test_history_with_a_single_message_over_the_limit_cannot_be_split() -> None:
    with pytest.raises(TooLarge):
        protocol.frames_for({"type": "history", "messages": [{"body": "x" * LIMIT}]})


message_strategy = st.fixed_dictionaries(
    {"id": st.integers(0, 10**9), "body": st.text(max_size=3000)},
    optional={"reactions": st.lists(st.sampled_from(["❤️", "👍", "😂"]), max_size=5)},
)


@settings(max_examples=60, deadline=None)
@given(
    messages=st.lists(message_strategy, min_size=1, max_size=200),
    limit=st.integers(min_value=4_000, max_value=LIMIT),
    thread=st.dictionaries(st.text(max_size=10), st.text(max_size=50), max_size=3),
)
def test_history_frames_fit_the_limit_and_rejoin_in_order(
    messages: list[dict[str, Any]], limit: int, thread: dict[str, str]
) -> None:
    payload = {"type": "history", "thread": thread, "messages": messages}
    frames = protocol.frames_for(payload, limit)
    assert all(len(frame) <= limit for frame in frames)
    decoded = [json.loads(frame) for frame in frames]
    if len(frames) == 1:
        assert decoded[0] == payload
        return
    assert [d["part"] for d in decoded] == list(range(1, len(frames) + 1))
    assert all(d["parts"] == len(frames) for d in decoded)
    assert all(d["thread"] == thread and d["type"] == "history" for d in decoded)
    assert [m for d in decoded for m in d["messages"]] == messages
    assert all(d["messages"] for d in decoded)


def test_large_history_uses_few_frames() -> None:
    messages = [{"id": i, "body": "x" * 500} for i in range(1000)]
    frames = protocol.frames_for({"type": "history", "messages": messages})
    total = sum(len(f) for f in frames)
    assert len(frames) == -(-total // LIMIT) or len(frames) == -(-total // LIMIT) + 1


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}', '{"a": 1e999}'])
def test_non_finite_numbers_are_not_json(text: str) -> None:
    with pytest.raises(InvalidMessage, match="not valid JSON"):
        protocol.parse_frame(text)


def test_encode_refuses_what_a_browser_could_not_parse() -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        protocol.encode({"a": float("nan")})
    assert protocol.encode({"a": 1.5, "b": "é"}) == '{"a":1.5,"b":"é"}'.encode()
