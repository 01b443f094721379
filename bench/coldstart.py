"""Cold start: ``import app`` in a fresh interpreter, against importing just its dependencies.

Each sample is a new ``python -c`` process that times its own import with
``time.perf_counter`` (interpreter start-up is the same for both and is
reported apart, as the whole process's wall time). Samples alternate between
the two so that noise from the shared machine falls on both; one warm-up of
each first.

Two modes:

- ``cached`` (the one judged): byte-code for everything is cached (in a
  temporary ``PYTHONPYCACHEPREFIX``, so nothing is written into the tree), so the
  ratio measures the work the app does at import and nothing else;
- ``source``: ``PYTHONDONTWRITEBYTECODE=1``, as on a machine that never caches
  the project's byte-code: the installed dependencies come from their ``.pyc``,
  ``app.py`` and ``chalicelib`` are compiled at every start. (``chalice
  package`` ships no ``.pyc``: on Lambda the packaged code compiles at every
  cold start.)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from typing import Any

from bench.servers import DUMMY_AWS_ENV, PY, ROOT

RUNS = 11
APP = "import app"
DEPENDENCIES = "import boto3, requests, urllib3, chalice\nfrom aws_lambda_powertools import Logger, Metrics"
_TIMED = "import time\n_t = time.perf_counter()\n{stmt}\nprint(time.perf_counter() - _t)\n"


def sample(stmt: str, env: dict[str, str]) -> tuple[float, float]:
    """(seconds inside the import, seconds for the whole process) for one fresh interpreter."""
    started = time.perf_counter()
    completed = subprocess.run(
        [PY, "-c", _TIMED.format(stmt=stmt)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{stmt!r} failed: {completed.stderr[-1500:]}")
    return float(completed.stdout.strip().splitlines()[-1]), wall


def measure(env: dict[str, str], runs: int) -> dict[str, Any]:
    sample(APP, env)
    sample(DEPENDENCIES, env)
    imports: dict[str, list[float]] = {"app": [], "dependencies": []}
    process: dict[str, list[float]] = {"app": [], "dependencies": []}
    for _ in range(runs):
        for name, stmt in (("app", APP), ("dependencies", DEPENDENCIES)):
            inside, wall = sample(stmt, env)
            imports[name].append(inside)
            process[name].append(wall)
    median = {name: statistics.median(values) for name, values in imports.items()}
    median_process = {name: statistics.median(values) for name, values in process.items()}
    return {
        "import_ms": {k: v * 1000 for k, v in median.items()},
        "import_ms_spread": {k: [min(v) * 1000, max(v) * 1000] for k, v in imports.items()},
        "process_ms": {k: v * 1000 for k, v in median_process.items()},
        "ratio": median["app"] / median["dependencies"],
        "process_ratio": median_process["app"] / median_process["dependencies"],
    }


def run(runs: int = RUNS) -> dict[str, Any]:
    base = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    }
    base.update(DUMMY_AWS_ENV)
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as prefix:
        cached = measure({**base, "PYTHONPYCACHEPREFIX": prefix}, runs)
    source = measure({**base, "PYTHONDONTWRITEBYTECODE": "1"}, runs)
    return {
        "runs": runs,
        "cached": cached,
        "source": source,
        "dependencies_stmt": DEPENDENCIES.replace("\n", "; "),
    }
