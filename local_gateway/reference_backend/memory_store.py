"""Bookings, their chat threads, notifications and the feed, in memory; one lock for all."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Booking:
    booking_id: str
    status: str = "pending"
    messages: list[dict[str, Any]] = field(default_factory=list)
    participants: list[str] = field(default_factory=list)
    last_read: dict[str, int] = field(default_factory=dict)

    @property
    def thread_id(self) -> str:
        return f"booking-{self.booking_id}"

    def thread(self) -> dict[str, Any]:
        return {
            "id": self.thread_id,
            "booking_id": self.booking_id,
            "title": f"Booking {self.booking_id}",
            "participants": list(self.participants),
            "message_count": len(self.messages),
            "last_message_id": self.messages[-1]["id"] if self.messages else None,
        }

    def summary(self) -> dict[str, Any]:
        return {"booking_id": self.booking_id, "status": self.status, "thread_id": self.thread_id}

    def unread(self, user: str) -> int:
        """Messages from others after the last one ``user`` has read."""
        last_read = self.last_read.get(user, 0)
        return sum(1 for m in self.messages if m["id"] > last_read and m["user_id"] != user)

    def join(self, user: str) -> None:
        if user not in self.participants:
            self.participants.append(user)


class MemoryStore:
    """Hold ``lock`` while reading or changing anything here."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bookings: dict[str, Booking] = {}
        self.notifications: dict[str, list[dict[str, Any]]] = {}
        self.feed: list[dict[str, Any]] = [{"id": 1, "title": "Welcome to the feed", "created_at": now_iso()}]
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    def booking(self, booking_id: str) -> Booking:
        """A booking, created on first use with a welcome message from its host."""
        booking = self.bookings.get(booking_id)
        if booking is None:
            booking = Booking(booking_id, participants=["host"])
            booking.messages.append(
                {
                    "id": self.next_id(),
                    "thread_id": booking.thread_id,
                    "user_id": "host",
                    "body": f"Welcome to booking {booking_id}! Check-in is from 3 pm.",
                    "created_at": now_iso(),
                    "reactions": {},
                }
            )
            self.bookings[booking_id] = booking
        return booking
