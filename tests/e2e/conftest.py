"""The local stack, started once per test session as a child process on free loopback ports.

The stack runs in its own process (``python -m local_gateway``), as a user runs
it: the environment it sets for the app never leaks into the test process,
and Ctrl-C (SIGINT) is how it stops.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.support import StackProcess


@pytest.fixture(scope="session")
def local_stack() -> Iterator[StackProcess]:
    stack = StackProcess("stack")
    yield stack
    status = stack.stop()
    assert status == 0, f"the stack did not stop cleanly ({status}):\n{stack.output[-3000:]}"
