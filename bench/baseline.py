"""The baseline code the benchmarks compare this code with, extracted from git."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

from bench.servers import ROOT

#: The code before this round's changes (one module per use case, hardening, the
#: asyncio fan-out): what cold start and overhead are held to unless BENCH_BASELINE_REF
#: names another commit.
DEFAULT_BASELINE = "e6265c1"


def baseline_ref() -> str:
    return os.environ.get("BENCH_BASELINE_REF") or DEFAULT_BASELINE


def extract(ref: str, into: Path) -> str:
    """``app.py`` and ``chalicelib/`` at ``ref`` into ``into``; answers the commit's short id."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "app.py", "chalicelib"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
