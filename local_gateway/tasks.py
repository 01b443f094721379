"""The gateway's background tasks: ``$default`` calls and asynchronous Lambda invocations.

Both APIs start work that outlives the request that started it; shutdown waits
for all of it (bounded), so every ``$disconnect`` and every ``Event``
invocation still runs when the stack stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any


class BackgroundTasks:
    """The running tasks, kept referenced until they finish."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float) -> None:
        """Wait for every task, including those started meanwhile, for at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))
