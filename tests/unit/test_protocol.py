"""Pure protocol rules (docs/protocol.md): no I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib import protocol, wire
from chalicelib.errors import BackendError, Forbidden, InvalidMessage, TooLarge, Unauthorized
from chalicelib.routes import DEFAULT_ROUTES

LIMIT = wire.MAX_MESSAGE_BYTES


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
        ({"id": "x" * 128}, "x" * 128),
        ({"id": "x" * 129}, None),
        ({"id": "\ud800", "client_id": "c"}, "c"),
        ({"id": 2**53 - 1}, 2**53 - 1),
        ({"id": -(2**53)}, None),
        ({"id": 0.25}, 0.25),
        ({"id": float("nan")}, None),
        ({"client_id": "y" * 129}, None),
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
    assert wire.frames_for({"type": "message"}) == [b'{"type":"message"}']
    with pytest.raises(TooLarge):
        wire.frames_for({"type": "message", "body": "x" * LIMIT})
    with pytest.raises(TooLarge):
        wire.frames_for({"type": "history", "messages": [], "pad": "x" * LIMIT})
    with pytest.raises(TooLarge):
        wire.frames_for([1] * LIMIT)


def test_history_with_a_single_message_over_the_limit_cannot_be_split() -> None:
    with pytest.raises(TooLarge):
        wire.frames_for({"type": "history", "messages": [{"body": "x" * LIMIT}]})


message_strategy = st.fixed_dictionaries(
    {"id": st.integers(0, 10**9), "body": st.text(max_size=3000)},
    optional={"reactions": st.lists(st.sampled_from(["❤️", "👍", "😂"]), max_size=5)},
)


@settings(max_examples=60, deadline=None)
@given(
    messages=st.lists(message_strategy, min_size=1, max_size=200),
    limit=st.integers(min_value=4_000, max_value=LIMIT),
    thread=st.dictionaries(st.text(max_size=10), st.text(max_size=50), max_size=3),
    ref=st.one_of(st.none(), st.text(max_size=128), st.integers(-(2**53), 2**53)),
)
def test_history_frames_fit_the_limit_and_rejoin_in_order_with_ref_on_the_last(
    messages: list[dict[str, Any]], limit: int, thread: dict[str, str], ref: str | int | None
) -> None:
    payload = {"type": "history", "thread": thread, "messages": messages}
    frames = wire.frames_for(payload, limit, ref=ref)
    assert all(len(frame) <= limit for frame in frames)
    decoded = [json.loads(frame) for frame in frames]
    assert [d.get("ref") for d in decoded] == [None] * (len(frames) - 1) + [ref]
    if len(frames) == 1:
        assert decoded[0] == (payload if ref is None else {**payload, "ref": ref})
        return
    assert [d["part"] for d in decoded] == list(range(1, len(frames) + 1))
    assert all(d["parts"] == len(frames) for d in decoded)
    assert all(d["thread"] == thread and d["type"] == "history" for d in decoded)
    assert [m for d in decoded for m in d["messages"]] == messages
    assert all(d["messages"] for d in decoded)


def test_large_history_uses_few_frames() -> None:
    messages = [{"id": i, "body": "x" * 500} for i in range(1000)]
    frames = wire.frames_for({"type": "history", "messages": messages})
    total = sum(len(f) for f in frames)
    assert len(frames) == -(-total // LIMIT) or len(frames) == -(-total // LIMIT) + 1


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}', '{"a": 1e999}'])
def test_non_finite_numbers_are_not_json(text: str) -> None:
    with pytest.raises(InvalidMessage, match="not valid JSON"):
        protocol.parse_frame(text)


def test_encode_refuses_what_a_browser_could_not_parse() -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        wire.encode({"a": float("nan")})
    assert wire.encode({"a": 1.5, "b": "é"}) == '{"a":1.5,"b":"é"}'.encode()


# -- untrusted text and echoed ids -----------------------------------------------------


def test_encode_replaces_lone_surrogates_in_keys_and_values() -> None:
    data = wire.encode({"a\ud800": ["\udc80", "ok 😀"], "ref": "\udfff"})
    assert json.loads(data.decode("utf-8")) == {"a\ufffd": ["\ufffd", "ok 😀"], "ref": "\ufffd"}


def test_an_error_frame_with_any_ref_encodes() -> None:
    frame = protocol.error_frame("invalid_message", "bad \ud800", ref="\udc00")
    assert json.loads(wire.encode(frame)) == {**frame, "message": "bad \ufffd", "ref": "\ufffd"}


@pytest.mark.parametrize(
    "body",
    ['{"b":"\\ud800"}', '{"\\uDBFF":1}', '{"b":[{"c":"x\\udc00"}]}', '{"b":"\ud800"}', '{"b":"\\ud83d"}'],
)
def test_frames_holding_a_lone_surrogate_are_invalid(body: str) -> None:
    with pytest.raises(InvalidMessage, match="lone surrogate"):
        protocol.parse_frame(body)


def test_a_refused_frame_keeps_an_id_that_can_be_echoed() -> None:
    with pytest.raises(InvalidMessage) as raised:
        protocol.parse_frame('{"id": "r-1", "b": "\\udc80"}')
    assert protocol.error_frame_for(raised.value)["ref"] == "r-1"
    assert protocol.error_frame_for(raised.value, "other")["ref"] == "other"
    with pytest.raises(InvalidMessage) as raised:
        protocol.parse_frame('{"id": "\\udc80"}')
    assert "ref" not in protocol.error_frame_for(raised.value)


def test_surrogate_pairs_and_escaped_backslashes_are_text() -> None:
    assert protocol.parse_frame('{"b":"\\ud83d\\ude00"}') == {"b": "😀"}
    assert protocol.parse_frame('{"b":"\\\\ud800"}') == {"b": "\\ud800"}


@pytest.mark.parametrize(
    ("frame", "reason"),
    [({"id": "x" * 129}, "129 characters"), ({"id": 2**53}, r"2\^53"), ({"id": -(10**40)}, r"2\^53")],
)
def test_string_or_number_ids_that_cannot_be_echoed_are_refused(
    frame: dict[str, object], reason: str
) -> None:
    with pytest.raises(InvalidMessage, match=reason) as raised:
        protocol.parse_frame(json.dumps(frame))
    assert raised.value.ref is None


def test_ids_of_other_types_are_not_ids() -> None:
    for frame in ({"id": True}, {"id": {"x": 1}}, {"id": None}, {"id": [1]}):
        assert protocol.parse_frame(json.dumps(frame)) == frame


#: Ids as JSON text: any value, or strings of lone and paired surrogate escapes.
_json_ids = st.one_of(
    st.one_of(
        st.text(max_size=300),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
    ).map(json.dumps),
    st.from_regex(r"(\\u[dD][89a-fA-F][0-9a-f]{2}|[a-z]){0,200}", fullmatch=True).map(lambda t: f'"{t}"'),
)


@settings(max_examples=300, deadline=None)
@given(ident=_json_ids, key=st.sampled_from(["id", "client_id"]))
def test_every_error_frame_is_small_utf8_json_whatever_the_id(ident: str, key: str) -> None:
    body = f'{{"{key}":{ident}}}'
    try:
        frame = protocol.parse_frame(body)
        error = protocol.error_frame("backend_error", "refused", ref=protocol.reference(frame))
    except InvalidMessage as exc:
        error = protocol.error_frame_for(exc)
    data = wire.encode(error)
    assert len(data) <= 1024
    assert json.loads(data.decode("utf-8"))["type"] == "error"


def test_connect_tokens_holding_a_lone_surrogate_are_unauthorized() -> None:
    with pytest.raises(Unauthorized, match="lone surrogate"):
        protocol.parse_connect({"booking_id": "1", "token": "a\ud800"}, {}, DEFAULT_ROUTES)
    with pytest.raises(Unauthorized, match="lone surrogate"):
        protocol.parse_connect(
            {"booking_id": "1"}, {"Sec-WebSocket-Protocol": "bearer, \udc80"}, DEFAULT_ROUTES
        )


@pytest.mark.parametrize(
    "event",
    [
        {"channel": {"feed": True}, "payload": {"t": "\ud800"}},
        {"channel": {"feed": True}, "payload": {"\udc80": 1}},
        {"channel": {"user_id": "\udc80"}, "payload": {}},
    ],
)
def test_push_holding_a_lone_surrogate_is_invalid(event: dict[str, object]) -> None:
    with pytest.raises(InvalidMessage, match="lone surrogate"):
        protocol.parse_push(event, DEFAULT_ROUTES)


def test_a_push_to_a_booking_carries_its_tags_in_the_one_frame_it_checks() -> None:
    event = {"channel": {"booking_id": "7"}, "connection_type": "chat", "payload": {"type": "status"}}
    target = protocol.parse_push(event, DEFAULT_ROUTES)
    assert wire.loads(target.frame) == {"type": "status", "booking_id": "7", "connection_type": "chat"}
    own = {"type": "status", "booking_id": "elsewhere"}  # the backend's own fields are never changed
    target = protocol.parse_push({"channel": {"booking_id": "7"}, "payload": own}, DEFAULT_ROUTES)
    assert wire.loads(target.frame) == own
    target = protocol.parse_push({"channel": {"user_id": "u1"}, "payload": {"type": "n"}}, DEFAULT_ROUTES)
    assert wire.loads(target.frame) == {"type": "n"}  # no booking: no tags


def test_a_push_over_the_limit_says_whether_its_tags_put_it_there() -> None:
    fits = wire.MAX_MESSAGE_BYTES - len('{"blob":""}')  # exactly the limit untagged
    event: dict[str, Any] = {"channel": {"booking_id": "7"}, "payload": {"blob": "x" * fits}}
    with pytest.raises(TooLarge, match="with its booking_id is over the message limit"):
        protocol.parse_push(event, DEFAULT_ROUTES)
    event = {"channel": {"feed": True}, "payload": {"blob": "x" * fits}}
    assert len(protocol.parse_push(event, DEFAULT_ROUTES).frame) == wire.MAX_MESSAGE_BYTES
    event = {"channel": {"booking_id": "7"}, "payload": {"blob": "x" * (fits + 1)}}
    with pytest.raises(TooLarge, match=f"the payload is {wire.MAX_MESSAGE_BYTES + 1} bytes, over the 128 KB"):
        protocol.parse_push(event, DEFAULT_ROUTES)


def test_text_helpers() -> None:
    assert wire.is_text("ok 😀")
    assert not wire.is_text("a\ud800")
    assert wire.as_text("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert wire.has_lone_surrogate([{"k": ["x", {"\udc00": 1}]}])
    assert not wire.has_lone_surrogate([{"k": ["x", {"y": 1.5, "z": None}]}])


# -- one socket per user ------------------------------------------------------------------


def test_a_chat_connect_without_booking_id_is_the_users_socket_and_a_booking_one_is_not() -> None:
    request = protocol.parse_connect({"token": "t"}, None, DEFAULT_ROUTES)
    assert request.user_level
    assert request.connect_path() == "/api/chat/ws/connect"
    per_booking = protocol.parse_connect({"booking_id": "4", "token": "t"}, None, DEFAULT_ROUTES)
    assert not per_booking.user_level
    assert per_booking.connect_path() == "/api/chat/ws/4/connect"
    with pytest.raises(InvalidMessage):
        protocol.parse_connect({"type": "booking", "token": "t"}, None, DEFAULT_ROUTES)


@pytest.mark.parametrize(("raw", "since"), [("0", 0), ("1187", 1187), (str(2**53 - 1), 2**53 - 1)])
def test_since_in_the_url_is_a_non_negative_integer(raw: str, since: int) -> None:
    request = protocol.parse_connect({"booking_id": "4", "token": "t", "since": raw}, None, DEFAULT_ROUTES)
    assert request.since == since


@pytest.mark.parametrize("raw", ["", "-1", "+1", "1.0", "1e3", " 1", "0x10", "٣", str(2**53), "9" * 40])
def test_since_in_the_url_that_is_not_one_is_400(raw: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        protocol.parse_connect({"booking_id": "4", "token": "t", "since": raw}, None, DEFAULT_ROUTES)
    assert info.value.status == 400
    assert "since" in info.value.message


def test_a_booking_target_defaults_and_checks_its_fields() -> None:
    target = protocol.parse_booking_target({"booking_id": 42}, DEFAULT_ROUTES, "chat", with_since=True)
    assert (target.booking_id, target.connection_type, target.since, target.channel) == (
        "42",
        "chat",
        None,
        "booking#42",
    )
    booking = protocol.parse_booking_target(
        {"booking_id": "b", "connection_type": "booking", "since": 5}, DEFAULT_ROUTES, "chat"
    )
    assert (booking.connection_type, booking.since) == ("booking", None)  # since only when asked
    with pytest.raises(InvalidMessage, match="connection_type"):
        protocol.parse_booking_target({"booking_id": "b", "connection_type": "feed"}, DEFAULT_ROUTES, "chat")


def test_tagging_adds_booking_id_and_connection_type_only_when_absent() -> None:
    assert protocol.tagged({"type": "m"}, "4", "chat") == {
        "type": "m",
        "booking_id": "4",
        "connection_type": "chat",
    }
    assert protocol.tagged({"booking_id": "x"}, "4", None) == {"booking_id": "x"}
    assert protocol.tagged({"connection_type": "y"}, "4", "chat") == {
        "connection_type": "y",
        "booking_id": "4",
    }
    assert protocol.tagged([1], "4", "chat") == [1]


@pytest.mark.parametrize(
    ("channel", "value"),
    [
        ({"booking_id": 42}, "42"),
        ({"booking_id": "b-1"}, "b-1"),
        ({"user_id": 7}, "7"),
        ({"feed": True}, None),
    ],
)
def test_a_push_channel_takes_the_ids_a_frame_takes(channel: dict[str, object], value: object) -> None:
    assert protocol.parse_push({"channel": channel, "payload": {}}, DEFAULT_ROUTES).channel_value == value


@pytest.mark.parametrize(
    ("channel", "words"),
    [
        ({"booking_id": -1}, "channel.booking_id must be 1-64"),
        ({"booking_id": True}, "channel.booking_id must be 1-64"),
        ({"booking_id": "1/2"}, "channel.booking_id must be 1-64"),
        ({"user_id": ""}, "channel.user_id must be a non-empty string or number"),
        ({"user_id": "u" * 129}, "channel.user_id must be a non-empty string or number"),
        ({"user_id": False}, "channel.user_id must be a non-empty string or number"),
        ({"feed": 1}, "channel.feed must be true"),
        ({"room": "1"}, "unknown channel kind 'room'"),
        ({"feed": True, "user_id": "u"}, "channel must be one of"),
    ],
)
def test_a_bad_push_channel_is_explained(channel: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidMessage, match=words):
        protocol.parse_push({"channel": channel, "payload": {}}, DEFAULT_ROUTES)


@pytest.mark.parametrize(
    ("answer", "user"),
    [
        ({}, None),
        ({"user_id": None}, None),
        ({"user_id": ""}, None),
        ({"user_id": 7}, "7"),
        ({"user_id": "u"}, "u"),
    ],
)
def test_a_connect_answer_names_its_user_or_no_one(answer: dict[str, object], user: str | None) -> None:
    assert protocol.answered_user(answer) == user


@pytest.mark.parametrize("value", [False, 0.5, [1], "u" * 129, "u\ud800"])
def test_a_connect_answer_with_an_invalid_user_id_is_a_backend_error(value: object) -> None:
    with pytest.raises(BackendError, match="invalid user_id"):
        protocol.answered_user({"user_id": value})
