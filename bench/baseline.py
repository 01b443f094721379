"""The baseline code the benchmarks compare this code with, extracted from git."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

from bench.servers import ROOT

#: The baseline on ``main`` itself (or without it): the code this round of work began from
#: (Python 3.11, boto3 for DynamoDB and Lambda, the container of use cases), which the
#: round's performance targets are measured against.
DEFAULT_BASELINE = "100751e"


def _git(*args: str) -> str:
    found = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return found.stdout.strip()


def baseline_ref() -> str:
    """``BENCH_BASELINE_REF``; else, on a branch, where it left ``main`` (``git merge-base HEAD
    main``); else (on ``main``, where that is this very code) ``DEFAULT_BASELINE``."""
    if os.environ.get("BENCH_BASELINE_REF"):
        return os.environ["BENCH_BASELINE_REF"]
    fork = _git("merge-base", "HEAD", "main")
    return fork if fork and fork != _git("rev-parse", "HEAD") else DEFAULT_BASELINE


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
