"""Cold start: ``import app`` in a fresh interpreter, against importing just its dependencies.

Each sample is a new ``python -c`` process that times its own import with
``time.perf_counter`` (interpreter start-up is the same for both and is
reported apart, as the whole process's wall time). Samples alternate between
the two so that noise from the shared machine falls on both; one warm-up of
each first (byte-code caches, page cache).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from typing import Any

from bench.servers import DUMMY_AWS_ENV, PY, ROOT

RUNS = 9
APP = "import app"
DEPENDENCIES = "import boto3, requests, urllib3, chalice\nfrom aws_lambda_powertools import Logger, Metrics"
_TIMED = "import time\n_t = time.perf_counter()\n{stmt}\nprint(time.perf_counter() - _t)\n"


def sample(stmt: str) -> tuple[float, float]:
    """(seconds inside the import, seconds for the whole process) for one fresh interpreter."""
    env = {**os.environ, **DUMMY_AWS_ENV}
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


def run(runs: int = RUNS) -> dict[str, Any]:
    sample(APP)
    sample(DEPENDENCIES)
    imports: dict[str, list[float]] = {"app": [], "dependencies": []}
    process: dict[str, list[float]] = {"app": [], "dependencies": []}
    for _ in range(runs):
        for name, stmt in (("app", APP), ("dependencies", DEPENDENCIES)):
            inside, wall = sample(stmt)
            imports[name].append(inside)
            process[name].append(wall)
    median = {name: statistics.median(values) for name, values in imports.items()}
    median_process = {name: statistics.median(values) for name, values in process.items()}
    return {
        "runs": runs,
        "import_ms": {k: v * 1000 for k, v in median.items()},
        "import_ms_spread": {k: [min(v) * 1000, max(v) * 1000] for k, v in imports.items()},
        "process_ms": {k: v * 1000 for k, v in median_process.items()},
        "ratio": median["app"] / median["dependencies"],
        "process_ratio": median_process["app"] / median_process["dependencies"],
        "dependencies_stmt": DEPENDENCIES.replace("\n", "; "),
    }
