"""What a reliability run measured, printed at the end of the run and kept in test-artifacts/."""

from __future__ import annotations

from typing import Any

#: Figures of the load scenario (filled in by tests/reliability/test_load.py).
LOAD: dict[str, Any] = {}
#: Each reliability test's outcome: nodeid → (outcome, seconds).
OUTCOMES: dict[str, tuple[str, float]] = {}
