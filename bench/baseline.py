"""The baseline code the benchmarks compare this code with, extracted from git."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

from bench.servers import ROOT

#: The baseline where no ``main`` branch is found (a checkout without it): the code before
#: one module per use case, hardening and the asyncio fan-out.
DEFAULT_BASELINE = "e6265c1"


def baseline_ref() -> str:
    """``BENCH_BASELINE_REF``, else where this branch left ``main`` (``git merge-base HEAD main``)."""
    if os.environ.get("BENCH_BASELINE_REF"):
        return os.environ["BENCH_BASELINE_REF"]
    found = subprocess.run(
        ["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return found.stdout.strip() or DEFAULT_BASELINE


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
