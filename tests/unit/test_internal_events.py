"""The events the app sends itself: each one's payload reads back as the same event."""

from __future__ import annotations

import base64
import json
import zlib

import pytest

from chalicelib.errors import InvalidEvent
from chalicelib.internal_events import DeliveryEvent, FanOutChunk, PresenceEvent, pack_frames

FRAMES = [b'{"type":"history","messages":[]}', '{"b":"é 😀"}'.encode()]


def test_a_delivery_event_reads_back_from_its_json_payload() -> None:
    event = DeliveryEvent("A=", "booking#1", FRAMES)
    payload = json.loads(json.dumps(event.to_payload()))
    assert sorted(payload) == ["channel", "connection_id", "frames"]
    assert DeliveryEvent.from_payload(payload) == event


@pytest.mark.parametrize("attempt", [0, 2])
def test_a_fan_out_chunk_reads_back_from_its_json_payload(attempt: int) -> None:
    chunk = FanOutChunk("booking#1", ["A=", "B="], FRAMES, attempt)
    payload = json.loads(json.dumps(chunk.to_payload()))
    assert sorted(payload["chunk"]) == ["attempt", "channel", "connection_ids", "frames"]
    assert FanOutChunk.from_payload(payload, max_attempt=2) == chunk
    with pytest.raises(InvalidEvent, match="attempt"):
        FanOutChunk.from_payload(payload, max_attempt=attempt - 1)


def test_a_fan_out_chunk_without_attempt_is_the_first() -> None:
    payload = {"chunk": {"channel": "feed#", "connection_ids": ["A="], "frames": pack_frames(FRAMES)}}
    assert FanOutChunk.from_payload(payload, max_attempt=2).attempt == 0


def test_a_presence_event_reads_back_from_its_json_payload() -> None:
    event = PresenceEvent("A=", "u-1", False, (("1", "chat"), ("b-2", "booking")))
    payload = json.loads(json.dumps(event.to_payload()))
    assert payload["presence"]["channels"][1] == {"booking_id": "b-2", "connection_type": "booking"}
    assert PresenceEvent.from_payload(payload, booking_types=["chat", "booking"]) == event
    with pytest.raises(InvalidEvent, match="connection_type"):
        PresenceEvent.from_payload(payload, booking_types=["chat"])


def _packed(value: object) -> str:
    """``value`` packed as frames are (zlib + base64 of its JSON), whatever it is."""
    return base64.b64encode(zlib.compress(json.dumps(value).encode())).decode("ascii")


@pytest.mark.parametrize("frames", [{"0": "frame"}, "frame", ["frame", 1], [None], [["frame"]]], ids=repr)
def test_packed_frames_that_are_not_a_list_of_strings_are_not_an_event(frames: object) -> None:
    payload = {"connection_id": "A=", "channel": "booking#1", "frames": _packed(frames)}
    with pytest.raises(InvalidEvent, match="frames must be a list of strings"):
        DeliveryEvent.from_payload(payload)
    with pytest.raises(InvalidEvent, match="frames must be a list of strings"):
        FanOutChunk.from_payload({"chunk": {**payload, "connection_ids": ["A="]}}, max_attempt=2)


@pytest.mark.parametrize("ids", [["A=", 5], [None], [["A="]], [{"id": "A="}]], ids=repr)
def test_a_chunk_whose_connection_ids_are_not_all_strings_is_not_an_event(ids: list[object]) -> None:
    payload = {"chunk": {"channel": "booking#1", "connection_ids": ids, "frames": pack_frames(FRAMES)}}
    with pytest.raises(InvalidEvent, match="connection_ids must be strings"):
        FanOutChunk.from_payload(payload, max_attempt=2)


@pytest.mark.parametrize("entry", ["1", ["1", "chat"], None, 1], ids=repr)
def test_a_presence_channel_that_is_not_an_object_is_not_an_event(entry: object) -> None:
    valid = {"booking_id": "1", "connection_type": "chat"}
    payload = {
        "presence": {"connection_id": "A=", "user_id": "u-1", "online": True, "channels": [valid, entry]}
    }
    with pytest.raises(InvalidEvent, match="each channel is an object"):
        PresenceEvent.from_payload(payload, booking_types=["chat"])
