"""The events the app sends itself: each one's payload reads back as the same event."""

from __future__ import annotations

import json

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
