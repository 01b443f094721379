"""``$default`` with a broadcast, ours against AWS's published Node.js approach.

Ours: the whole ``app.message`` handler (``bench.invoke``, its own process):
the sender's GSI Query, the backend call, the channel Query, the fan-out, the
bookkeeping. The baseline (``bench/node/fanout.mjs``, its own process): the
handler of AWS's sample chat app in SDK v3: a Query of the channel through
``DynamoDBClient``, then ``Promise.all`` over ``PostToConnectionCommand`` for
every connection through a new ``ApiGatewayManagementApiClient``. Both read the
same table on the same moto server and post to the same stand-in (20 ms per
post). Each runs in one warm process (its clients, connections and JIT warmed
up first, as a warm Lambda container), and invocations alternate between the
two, one at a time, so that the shared machine's load falls on both alike.
Node and the SDK are installed into ``bench/node/node_modules`` (git-ignored)
on first use.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench.invoke import WARM_CHANNEL, ids_for
from bench.part import Target, part_main
from bench.servers import (
    DUMMY_AWS_ENV,
    PY,
    ROOT,
    moto_server,
    run_json,
    seed_channel,
    standin,
    use_dummy_aws_env,
)
from chalicelib.schema import PARTITION_KEY, SORT_KEY

DELAY = 0.02
SIZES = (100, 500, 1000)
#: Ours only: CPU per post at a size where the fixed costs are spread thin.
LARGE = 5000
REPEATS = 7
LARGE_REPEATS = 2
#: Posts in flight per fan-out (FANOUT_WORKERS) for ours; see bench/RESULTS.md for the choice.
WORKERS = 128
TABLE = "bench-handler-connections"
NODE_DIR = ROOT / "bench" / "node"


def table_for(n: int) -> str:
    return f"{TABLE}-{n}"


def node_binary() -> str:
    for candidate in ("/usr/bin/node", shutil.which("node")):
        if candidate and os.path.exists(candidate):
            return candidate
    raise RuntimeError("node is not installed (Debian: apt-get install nodejs npm)")


def ensure_node_sdk() -> str:
    """``npm install`` the SDK into bench/node (once); answers the SDK version used."""
    package = NODE_DIR / "node_modules" / "@aws-sdk" / "client-apigatewaymanagementapi" / "package.json"
    if not package.exists():
        npm = shutil.which("npm") or "/usr/bin/npm"
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent"],
            cwd=NODE_DIR,
            check=True,
            timeout=600,
            capture_output=True,
        )
    return str(json.loads(package.read_text())["version"])


def prepare(moto_base: str, sizes: list[int], table: str = TABLE) -> None:
    """The table and one channel per size (plus the warm-up channel)."""
    import boto3

    from infra.table import ensure_table

    client = boto3.client("dynamodb", endpoint_url=moto_base)
    ensure_table(client, table)
    for channel, n in [(WARM_CHANNEL, 8), *((f"b-{n}", n) for n in sizes)]:
        seed_channel(client, table, channel, ids_for(channel, n))


def run_ours(standin_base: str, moto_base: str, sizes: list[int], repeats: int, **kwargs: Any) -> Any:
    """Ours in a process of its own: every size ``repeats`` times (``bench.projection`` uses it)."""
    spec = {
        "standin": standin_base,
        "moto": moto_base,
        "table": TABLE,
        "sizes": sizes,
        "repeats": repeats,
        "workers": kwargs.pop("workers", WORKERS),
    }
    return run_json(["-m", "bench.invoke", json.dumps(spec)], env={**os.environ, **DUMMY_AWS_ENV}, **kwargs)


class Warm:
    """A warm handler process that runs one invocation per channel size written to it."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            args, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.read()  # {"ready": true} after its warm-up

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.process.args!r} exited ({self.process.wait(10)})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def invoke(self, size: int, table: str = "") -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{size} {table}\n")
        self.process.stdin.flush()
        answer = self.read()
        if answer.get("size") != size:
            raise RuntimeError(f"asked for {size}, got {answer}")
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def warm_node(standin_base: str, moto_base: str) -> Warm:
    # NODE_NO_WARNINGS: the SDK warns on stderr that later versions will need Node >= 22
    env = {**os.environ, **DUMMY_AWS_ENV, "AWS_ENDPOINT_URL_DYNAMODB": moto_base, "NODE_NO_WARNINGS": "1"}
    args = [node_binary(), "fanout.mjs", f"{standin_base}/development", table_for(SIZES[0]), PARTITION_KEY]
    args += [SORT_KEY, "booking#b-"]  # the channel keys this code writes
    return Warm(args, NODE_DIR, env)


def warm_ours(standin_base: str, moto_base: str, table: str) -> Warm:
    spec = {"standin": standin_base, "moto": moto_base, "table": table, "workers": WORKERS, "serve": True}
    return Warm([PY, "-m", "bench.invoke", json.dumps(spec)], ROOT, {**os.environ, **DUMMY_AWS_ENV})


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def run() -> dict[str, Any]:
    use_dummy_aws_env()
    sdk = ensure_node_sdk()
    sizes = list(SIZES)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {"ours": {}, "node": {}}
    with standin(DELAY) as stand, moto_server() as moto:
        for n in [*sizes, LARGE]:  # a table per channel: moto walks the whole table for every Query
            prepare(moto.base, [n], table_for(n))
        posts = stand.stats()["posts"]
        node = warm_node(stand.base, moto.base)
        ours = {n: warm_ours(stand.base, moto.base, table_for(n)) for n in sizes}
        try:
            # One invocation at a time, alternating (and which goes first too), so that the
            # shared machine's load falls on both alike.
            for repeat in range(REPEATS):
                for n in sizes:
                    pair: list[tuple[str, Warm]] = [("node", node), ("ours", ours[n])]
                    for who, process in pair if repeat % 2 else pair[::-1]:
                        runs[who].setdefault(str(n), []).append(process.invoke(n, table_for(n)))
        finally:
            node.close()
            for process in ours.values():
                process.close()
        large = warm_ours(stand.base, moto.base, table_for(LARGE))
        try:
            runs["ours"][str(LARGE)] = [large.invoke(LARGE) for _ in range(LARGE_REPEATS)]
        finally:
            large.close()
        posts = stand.stats()["posts"] - posts
    # warm-ups: Node one invocation on an 8-connection channel, each of ours two messages to one
    expected = 8 + 16 * (len(sizes) + 1) + 2 * sum(sizes) * REPEATS + LARGE * LARGE_REPEATS
    rows: dict[str, dict[str, Any]] = {}
    for n in sizes:
        rows[str(n)] = {"ours": _summary(runs["ours"][str(n)], n), "node": _summary(runs["node"][str(n)], n)}
    rows[str(LARGE)] = {"ours": _summary(runs["ours"][str(LARGE)], LARGE)}
    return {
        "delay_s": DELAY,
        "workers": WORKERS,
        "repeats": REPEATS,
        "node": node_version(),
        "sdk": sdk,
        "sizes": rows,
        "posts_seen": posts,
        "posts_expected": expected,
    }


def node_version() -> str:
    completed = subprocess.run([node_binary(), "--version"], capture_output=True, text=True, check=True)
    return completed.stdout.strip()


def _summary(runs: list[dict[str, float]], n: int) -> dict[str, Any]:
    return {
        "wall_s": _median(runs, "wall_s"),
        "wall_spread": [min(r["wall_s"] for r in runs), max(r["wall_s"] for r in runs)],
        "cpu_ms_per_post": _median(runs, "cpu_s") * 1000 / n,
        "runs": len(runs),
    }


def lines(res: dict[str, Any]) -> list[str]:
    out = [
        (
            f"$default broadcast, whole handler: ours (app.message, FANOUT_WORKERS={res['workers']}) against "
            f"AWS's sample approach (Node {res['node']}, SDK v3 {res['sdk']}, Promise.all); "
            f"stand-in at {res['delay_s'] * 1000:.0f} ms per post; median of {res['repeats']}"
        ),
        (
            f"{'N':>6}  {'ours wall s':>11} {'Node wall s':>11} {'ours/Node':>9}   "
            f"{'ours CPU ms/post':>16} {'Node CPU ms/post':>16}"
        ),
    ]
    for n, row in res["sizes"].items():
        o = row["ours"]
        node = row.get("node")
        if node:
            out.append(
                f"{int(n):>6}  {o['wall_s']:>11.3f} {node['wall_s']:>11.3f} "
                f"{o['wall_s'] / node['wall_s']:>8.2f}x   "
                f"{o['cpu_ms_per_post']:>16.3f} {node['cpu_ms_per_post']:>16.3f}"
            )
        else:
            out.append(
                f"{int(n):>6}  {o['wall_s']:>11.3f} {'-':>11} {'':>9}   "
                f"{o['cpu_ms_per_post']:>16.3f} {'-':>16}"
                f"   (ours only, median of {o['runs']})"
            )
    out.append(f"stand-in saw {res['posts_seen']:,} posts for {res['posts_expected']:,} expected")
    return out


def targets(res: dict[str, Any]) -> list[Target]:
    found = []
    for n, limit in (("500", 0.5), ("100", 0.75), ("1000", 0.75)):
        row = res["sizes"].get(n)
        if row and "node" in row:
            ratio = row["ours"]["wall_s"] / row["node"]["wall_s"]
            found.append(
                Target(
                    f"$default fan-out at N={int(n):,} <= {limit}x the Node sample's wall time",
                    ratio <= limit,
                    f"{ratio:.2f}x ({row['ours']['wall_s']:.3f} s vs {row['node']['wall_s']:.3f} s)",
                )
            )
    cpu = {n: res["sizes"][n]["ours"]["cpu_ms_per_post"] for n in ("500", str(LARGE)) if n in res["sizes"]}
    found.append(
        Target(
            "CPU per post <= 0.25 ms, whole handler amortised, at N=500 and 5,000",
            bool(cpu) and max(cpu.values()) <= 0.25,
            ", ".join(f"{int(n):,}: {v:.3f} ms" for n, v in cpu.items()),
        )
    )
    found.append(
        Target(
            "every post reached the stand-in exactly once",
            res["posts_seen"] == res["posts_expected"],
            f"{res['posts_seen']:,} of {res['posts_expected']:,}",
        )
    )
    return found


NOTE = (
    "- **$default against the Node sample**: " + " ".join((__doc__ or "").split("\n\n")[1].split()) + " "
    "Each channel has a table of its own (moto walks the whole table for every Query), and ours a "
    "warm process per table (the table is configuration). Wall time per invocation by `perf_counter` "
    "(ours) and `process.hrtime` (Node); CPU of the whole process per invocation "
    "(`time.process_time`, `process.cpuUsage`), divided by N. Ours runs with "
    "`PUSH_CHUNK_SIZE` above N, so one invocation posts to everyone as the sample does."
)

if __name__ == "__main__":
    part_main(__name__)
