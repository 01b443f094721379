"""Deadlines: every handler finishes before Lambda stops it.

A ``Deadline`` is a ``time.monotonic()`` instant. A handler's comes from its
Lambda context (``get_remaining_time_in_millis``) less ``RESERVE_SECONDS``, the
time kept back to answer the client or hand unfinished work to a later
invocation. Work that takes time (a backend call, a post, a pause between
retries) asks ``remaining()`` first and never runs past it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Time kept back from the Lambda deadline to answer or hand off what is left.
RESERVE_SECONDS = 1.5
#: With no Lambda context (scripts, benchmarks): as long as the longest function may run.
UNBOUNDED_SECONDS = 900.0


@dataclass(frozen=True)
class Deadline:
    at: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    @classmethod
    def from_context(cls, context: Any) -> Deadline:
        """The context's remaining time less ``RESERVE_SECONDS`` (never negative)."""
        try:
            seconds = float(context.get_remaining_time_in_millis()) / 1000 - RESERVE_SECONDS
        except (AttributeError, TypeError, ValueError):  # no Lambda context
            return cls.after(UNBOUNDED_SECONDS)
        return cls.after(max(0.0, seconds))

    def remaining(self) -> float:
        return max(0.0, self.at - self.clock())

    def later(self, seconds: float) -> Deadline:
        """A deadline ``seconds`` after this one."""
        return Deadline(self.at + seconds, self.clock)

    def within(self, seconds: float) -> Deadline:
        """This deadline, or ``seconds`` from now if that comes first."""
        return Deadline(min(self.at, self.clock() + seconds), self.clock)
