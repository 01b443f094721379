"""Running the deploy helpers as a person does: ``make table``, ``make redrive``, offline.

The environment has no AWS settings but the test's own: no region unless given, no
credentials file, no instance metadata, and every AWS endpoint on a loopback port
that refuses connections, so nothing leaves the machine whatever the command does.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def own_lines(self) -> list[str]:
        """stderr without make's own ``make: *** ... Error 1`` line."""
        return [line for line in self.err.splitlines() if not line.startswith("make")]


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that is bound and never listens: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


#: What a make running these tests (make test) passes down: a make started here is its own.
MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")


def offline_env(home: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in MAKE_VARIABLES}
    env.update(
        HOME=str(home),
        AWS_CONFIG_FILE=str(home / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_MAX_ATTEMPTS="1",
    )
    env.update(extra)
    return env


def run(command: list[str], env: dict[str, str]) -> Result:
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return Result(done.returncode, done.stdout, done.stderr)


def make(target: str, env: dict[str, str], *variables: str) -> Result:
    """``make -s TARGET`` with this test run's virtualenv, never rebuilding it."""
    command = ["make", "-s", "-o", f"{VENV}/.installed", f"VENV={VENV}", target, *variables]
    return run(command, env)


def module(name: str, env: dict[str, str], *args: str) -> Result:
    """``python -m NAME ARGS`` from the checkout."""
    command = [sys.executable, "-m", name, *args]
    return run(command, env)
