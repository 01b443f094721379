"""A Lambda projection of ``$default`` fan-out: time and cost by memory size and channel size.

Lambda gives a function CPU in proportion to its memory: one vCPU at 1,769 MB
(``share = memory / 1769``, capped at 1: the fan-out runs on one event loop,
so a second vCPU would not help). The projection takes the whole handler's CPU
as measured here (``bench.invoke``: process CPU per ``app.message`` invocation
with a broadcast to N, uncapped, median of ``REPEATS``; it includes parsing the
channel's Query pages) and the waiting as the model's, not moto's (moto walks
the whole table for a Query and says nothing about DynamoDB's latency):

    time(N, memory) = max(ceil(N / FANOUT_WORKERS) x 20 ms + pages(N) x 10 ms, cpu(N) / share)

posts in flight in rounds of one post's latency plus one 10 ms DynamoDB round trip
per 1 MB Query page, or the CPU stretched by the share, whichever is longer: the
event loop works while posts are in flight, so the two overlap (the sum, tried
first, came out 1.6-2x slower than the capped runs; the larger of the two is
within 25% of every capped point). The backend's own time is not included.
Cost = memory in GB x billed time x the GB-second price, plus the per-request
price; per million messages of that channel size.

The CPU-stretching part of the model is checked against a real cap where the
kernel allows one: the gateway alone posting to N=1,000 in a process that a cgroup
(v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us``) holds to ``CHECK_MEMORY / 1769``
of a CPU in 10 ms periods (in the default 100 ms ones a 0.2 s fan-out gets two bursts
and a stall, and its time moved by a third from run to run with where they fell),
while the stand-in runs outside it; projected from the same run
uncapped as ``max(wall - cpu, cpu / share)``. The same sweep over 32 to 256 posts
in flight, uncapped and capped, chooses ``FANOUT_WORKERS``. Uncapped and capped
sweeps alternate, one process each in turn, ``SWEEP_REPEATS`` pairs, so that a change
in the machine's load falls on both alike (measured one after the other, the check
moved between 0.58x and 1.65x over one day's runs of the same code).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.handler import prepare, run_ours
from bench.part import Target, part_main
from bench.servers import DUMMY_AWS_ENV, moto_server, run_json, standin, use_dummy_aws_env

SIZES = (100, 500, 1000, 5000)
MEMORY = (512, 1024, 1769)
REPEATS = 3
FULL_CPU_MB = 1769
#: AWS Lambda, x86, us-east-1, first pricing tier (aws.amazon.com/lambda/pricing).
PRICE_GB_SECOND = 0.0000166667
PRICE_REQUEST = 0.20 / 1_000_000
CHECK_MEMORY = 512
CHECK_SIZE = 500
WORKER_SWEEP = (32, 64, 128, 256)
SWEEP_POSTS = 1000
SWEEP_REPEATS = 5
DELAY = 0.02
#: The model's DynamoDB: one round trip per Query page of up to 1 MB of items read.
QUERY_PAGE_S = 0.010
ITEM_BYTES = 600  # a connection item with a JWT-sized token
WORKERS = 128


def share(memory_mb: int) -> float:
    return min(memory_mb / FULL_CPU_MB, 1.0)


def project(wall_s: float, cpu_s: float, memory_mb: int) -> float:
    """A run measured uncapped, as it would take under ``memory_mb``'s share of a CPU."""
    return max(wall_s - cpu_s, cpu_s / share(memory_mb))


def model(n: int, cpu_s: float, memory_mb: int, workers: int = WORKERS) -> float:
    pages = max(1, -(-n * ITEM_BYTES // 1_000_000))
    return max(-(-n // workers) * DELAY + pages * QUERY_PAGE_S, cpu_s / share(memory_mb))


def cost(seconds: float, memory_mb: int) -> float:
    """Dollars for one invocation (billed per millisecond)."""
    billed = -(-seconds * 1000 // 1) / 1000
    return memory_mb / 1024 * billed * PRICE_GB_SECOND + PRICE_REQUEST


# -- a CPU cap through cgroups ------------------------------------------------------


def _cgroup_dir() -> tuple[Path, str] | None:
    """Where to make a capped group, and its kind; None if this machine has no writable one."""
    v2 = Path("/sys/fs/cgroup")
    if (v2 / "cgroup.controllers").exists():
        if "cpu" in (v2 / "cgroup.subtree_control").read_text().split() and os.access(v2, os.W_OK):
            return v2, "v2"
        return None
    v1 = Path("/sys/fs/cgroup/cpu")
    if (v1 / "cpu.cfs_quota_us").exists() and os.access(v1, os.W_OK):
        return v1, "v1"
    return None


@contextmanager
def cpu_cap(fraction: float) -> Iterator[tuple[Callable[[], None], str]]:
    """A cgroup holding its processes to ``fraction`` of one CPU; yields a preexec_fn joining it."""
    found = _cgroup_dir()
    if found is None:
        raise RuntimeError("no writable cgroup cpu controller")
    base, kind = found
    group = base / f"ws-proxy-bench-{os.getpid()}"
    group.mkdir()
    period = 10_000
    quota = int(period * fraction)
    try:
        if kind == "v2":
            (group / "cpu.max").write_text(f"{quota} {period}\n")
        else:
            (group / "cpu.cfs_period_us").write_text(f"{period}\n")
            (group / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        procs = group / "cgroup.procs"

        def join() -> None:
            procs.write_text(f"{os.getpid()}\n")

        yield join, f"cgroup {kind}: quota {quota} us per {period} us"
    finally:
        for _ in range(50):  # the child has exited; the group empties a moment later
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


# -- measurements -------------------------------------------------------------------------


def _medians(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {
        n: {
            "wall_s": statistics.median(r["wall_s"] for r in rs),
            "cpu_s": statistics.median(r["cpu_s"] for r in rs),
        }
        for n, rs in runs.items()
    }


def sweep_workers(endpoint: str, preexec_fn: Any = None, repeats: int = 1) -> Any:
    """One process's sweep: per posts in flight, the median of ``repeats`` runs of ``SWEEP_POSTS``."""
    spec = {"sweep": list(WORKER_SWEEP), "endpoint": endpoint, "posts": SWEEP_POSTS, "repeats": repeats}
    return run_json(
        ["-m", "bench.invoke", json.dumps(spec)],
        env={**os.environ, **DUMMY_AWS_ENV},
        preexec_fn=preexec_fn,
    )


def alternated(endpoint: str, join: Callable[[], None]) -> dict[str, Any]:
    """``SWEEP_REPEATS`` pairs of sweeps, uncapped then capped (``join``), each a process of one run
    per posts in flight; per kind and posts in flight, the median wall time and, apart, the median
    CPU (an uncapped run's wall is the posts' latency, whatever its CPU: the run of median wall
    may hold any CPU, and the projection stretches that CPU)."""
    runs: dict[str, list[Any]] = {"uncapped": [], "capped": []}
    for _ in range(SWEEP_REPEATS):
        runs["uncapped"].append(sweep_workers(endpoint))
        runs["capped"].append(sweep_workers(endpoint, preexec_fn=join))
    return {
        kind: {
            workers: {
                key: statistics.median(one[workers][key] for one in sweeps)
                for key in ("wall_s", "cpu_s", "cpu_ms_per_post")
            }
            for workers in sweeps[0]
        }
        for kind, sweeps in runs.items()
    }


def run() -> dict[str, Any]:
    use_dummy_aws_env()
    sizes = list(SIZES)
    result: dict[str, Any] = {"sizes": sizes, "memory": list(MEMORY), "delay_s": DELAY, "workers": WORKERS}
    with standin(DELAY) as stand, moto_server() as moto:
        prepare(moto.base, sizes)
        result["measured"] = _medians(
            run_ours(stand.base, moto.base, sizes, REPEATS, workers=WORKERS)["runs"]
        )
        endpoint = f"{stand.base}/development"
        try:
            with cpu_cap(share(CHECK_MEMORY)) as (join, how):
                result["sweep"] = alternated(endpoint, join)
            result["check"] = {"memory": CHECK_MEMORY, "how": how}
        except (OSError, RuntimeError) as exc:
            result["sweep"] = {"uncapped": sweep_workers(endpoint, repeats=SWEEP_REPEATS)}
            result["check"] = {"skipped": f"{type(exc).__name__}: {exc}"}
    return result


# -- report -----------------------------------------------------------------------------


def table(res: dict[str, Any]) -> dict[int, dict[int, tuple[float, float]]]:
    """memory -> size -> (projected seconds, dollars per million messages)."""
    out: dict[int, dict[int, tuple[float, float]]] = {}
    for memory in res["memory"]:
        out[memory] = {}
        for n in res["sizes"]:
            seconds = model(n, res["measured"][str(n)]["cpu_s"], memory, res["workers"])
            out[memory][n] = (seconds, cost(seconds, memory) * 1_000_000)
    return out


def checks(res: dict[str, Any]) -> list[tuple[int, float, float]]:
    """(posts in flight, projected s, measured capped s) for each point of the sweep."""
    if "capped" not in res["sweep"]:
        return []
    out = []
    for workers, free in res["sweep"]["uncapped"].items():
        capped = res["sweep"]["capped"][workers]
        out.append(
            (int(workers), project(free["wall_s"], free["cpu_s"], res["check"]["memory"]), capped["wall_s"])
        )
    return out


def recommendation(res: dict[str, Any]) -> tuple[int, int, str]:
    """(memory MB, FANOUT_WORKERS, why), chosen from the numbers."""
    t = table(res)
    fastest = t[FULL_CPU_MB][500][0]
    memory = next(m for m in sorted(res["memory"]) if t[m][500][0] <= 1.5 * fastest)
    cheapest = min(res["memory"], key=lambda m: t[m][500][1])
    sweep = res["sweep"].get("capped") or res["sweep"]["uncapped"]
    best = min(v["wall_s"] for v in sweep.values())
    workers = min(int(w) for w, v in sweep.items() if v["wall_s"] <= 1.15 * best)
    why = (
        f"{memory} MB is the smallest size whose N=500 fan-out is within 1.5x of a full vCPU's "
        f"({t[memory][500][0]:.3f} s vs {fastest:.3f} s), at {t[memory][500][1] / t[cheapest][500][1]:.2f}x "
        f"the cost of the cheapest size ({cheapest} MB); FANOUT_WORKERS={workers} is the fewest posts in "
        f"flight within 15% of the best wall time at N={SWEEP_POSTS:,} "
        f"{'under the cap' if 'capped' in res['sweep'] else 'uncapped'} (each one in flight is a "
        "connection to open, a TLS handshake on a cold container)"
    )
    return memory, workers, why


def lines(res: dict[str, Any]) -> list[str]:
    t = table(res)
    out = [
        (
            "Lambda projection of $default with a broadcast: time = max(ceil(N / "
            f"{res['workers']}) x {res['delay_s'] * 1000:.0f} ms + Query pages x "
            f"{QUERY_PAGE_S * 1000:.0f} ms, "
            f"handler CPU x {FULL_CPU_MB} / memory)"
        ),
        "  handler CPU measured here: "
        + "; ".join(f"N={int(n):,}: {m['cpu_s'] * 1000:.0f} ms" for n, m in res["measured"].items()),
        f"{'memory':>8} " + " ".join(f"{f'N={n:,} s':>11} {'$/1M msg':>9}" for n in res["sizes"]),
    ]
    for memory, row in t.items():
        out.append(
            f"{memory:>5} MB "
            + " ".join(f"{seconds:>11.3f} {dollars:>9.2f}" for seconds, dollars in row.values())
        )
    out.append(
        f"  (x86 ${PRICE_GB_SECOND}/GB-s + ${PRICE_REQUEST * 1e6:.2f} per 1M requests, billed per ms; "
        "DynamoDB, Management API and backend charges not included)"
    )
    out.append(
        f"posts in flight: the gateway alone, N={SWEEP_POSTS:,}, median of {SWEEP_REPEATS} "
        "(wall / CPU per post)"
    )
    for kind, sweep in res["sweep"].items():
        out.append(
            f"  {kind:<9} "
            + ", ".join(f"{w}: {v['wall_s']:.3f} s / {v['cpu_ms_per_post']:.3f} ms" for w, v in sweep.items())
        )
    check = res["check"]
    if "skipped" in check:
        out.append(f"capped check skipped: {check['skipped']}")
    else:
        out.append(
            f"capped check ({check['how']}, {check['memory']} MB's share): projected from the uncapped run "
            "vs measured under the cap: "
            + ", ".join(f"{w}: {p:.3f} s vs {m:.3f} s ({m / p:.2f}x)" for w, p, m in checks(res))
        )
    memory, workers, why = recommendation(res)
    out.append(f"recommended: memory {memory} MB, FANOUT_WORKERS={workers}: {why}")
    return out


def targets(res: dict[str, Any]) -> list[Target]:
    found = checks(res)
    if not found:
        return []
    point = next((c for c in found if c[0] == res["workers"]), found[0])
    workers, predicted, measured = point
    ratio = measured / predicted
    return [
        Target(
            f"the projection holds under a real CPU cap ({res['check']['memory']} MB, N={SWEEP_POSTS:,}, "
            f"{workers} in flight): within 25%",
            0.75 <= ratio <= 1.25,
            f"measured {measured:.3f} s vs projected {predicted:.3f} s ({ratio:.2f}x)",
        )
    ]


NOTE = "- **Lambda projection**: " + " ".join(" ".join(p.split()) for p in (__doc__ or "").split("\n\n")[1:])

if __name__ == "__main__":
    part_main(__name__)
