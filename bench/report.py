"""Turning the benchmarks' results into printed lines, targets, RESULTS.md and the plot."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Target:
    name: str
    met: bool
    detail: str

    def line(self) -> str:
        return f"[{'met' if self.met else 'MISSED'}] {self.name}: {self.detail}"


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "nproc": nproc or str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# -- fan-out -------------------------------------------------------------------


def fanout_floors(res: dict[str, Any], n: int, cpu_ms_per_post: float) -> tuple[float, float]:
    """(latency floor, CPU floor) in seconds for ``n`` posts, as the issue defines them."""
    latency = n * res["delay_s"] / res["workers"]
    cpu = n * cpu_ms_per_post / 1000 / res["cores"]
    return latency, cpu


def fanout_lines(res: dict[str, Any]) -> list[str]:
    lines = [
        f"Fan-out: stand-in answers each post after {res['delay_s'] * 1000:.0f} ms; "
        f"FANOUT_WORKERS={res['workers']}; {res['cores']} cores",
        f"{'N':>6}  {'client':<20} {'wall s':>8} {'CPU ms/post':>12} {'ours faster':>12} "
        f"{'stand-in CPU':>13}",
    ]
    for n, runs in res["sizes"].items():
        ours = runs[0]
        for run in runs:
            ratio = run["wall_s"] / ours["wall_s"]
            note = (
                " (extrapolated from the first {} posts)".format(run["measured"])
                if run["extrapolated"]
                else ""
            )
            lines.append(
                f"{int(n):>6}  {run['client']:<20} {run['wall_s']:>8.3f} {run['cpu_ms_per_post']:>12.3f} "
                f"{'' if run is ours else f'{ratio:.1f}x':>12} {run['standin_cpu_share'] * 100:>12.0f}%{note}"
            )
        latency, cpu = fanout_floors(res, int(n), ours["cpu_ms_per_post"])
        floor = max(latency, cpu)
        lines.append(
            f"{'':>6}  floors: latency N x {res['delay_s'] * 1000:.0f} ms / {res['workers']} "
            f"= {latency:.3f} s; "
            f"CPU N x {ours['cpu_ms_per_post']:.3f} ms / {res['cores']} = {cpu:.3f} s; "
            f"ours / larger floor = {ours['wall_s'] / floor:.2f}x"
        )
    cap = res["standin_capacity"]
    best = max(int(n) / runs[0]["wall_s"] for n, runs in res["sizes"].items())
    lines.append(
        f"stand-in check: a no-op client (aiohttp, {cap['concurrency']} concurrent, unsigned) got "
        f"{cap['posts_per_s']:.0f} posts/s with the stand-in at "
        f"{cap['standin_cpu_share'] * 100:.0f}% of a core; "
        f"ours peaked at {best:.0f} posts/s ({cap['posts_per_s'] / best:.1f}x headroom)"
    )
    return lines


def breakdown_lines(res: dict[str, Any]) -> list[str]:
    b = res["cpu_breakdown"]
    lines = [f"CPU per post, single thread, stand-in answering at once ({b['posts']} posts each):"]
    for name, ms in b["cpu_ms_per_post"].items():
        lines.append(f"  {name:<42} {ms:.3f} ms")
    lines.append(
        f"cProfile of ours (inflated by the profiler: {b['profile_total_ms_per_post']:.3f} ms/post):"
    )
    for name, ms in b["profile_top_cumulative"][:14]:
        lines.append(f"  {ms:7.3f} ms cumulative  {name}")
    return lines


def fanout_targets(res: dict[str, Any]) -> list[Target]:
    sizes = res["sizes"]
    targets = []
    if "1000" in sizes or 1000 in sizes:
        runs = sizes.get("1000") or sizes[1000]
        ratio = runs[2]["wall_s"] / runs[0]["wall_s"]
        targets.append(
            Target(
                ">= 20x faster than sequential at 1,000",
                ratio >= 20,
                f"{ratio:.1f}x ({runs[0]['wall_s']:.3f} s vs {runs[2]['wall_s']:.2f} s)",
            )
        )
    worst_cpu = max(runs[0]["cpu_ms_per_post"] for runs in sizes.values())
    targets.append(
        Target(
            "<= 1.0 ms CPU per post",
            worst_cpu <= 1.0,
            f"worst size {worst_cpu:.3f} ms/post ("
            + ", ".join(f"{int(n):,}: {runs[0]['cpu_ms_per_post']:.3f}" for n, runs in sizes.items())
            + ")",
        )
    )
    parts = []
    worst = 0.0
    for n, runs in sizes.items():
        latency, cpu = fanout_floors(res, int(n), runs[0]["cpu_ms_per_post"])
        ratio = runs[0]["wall_s"] / max(latency, cpu)
        worst = max(worst, ratio)
        parts.append(f"{int(n):,}: {ratio:.2f}x")
    targets.append(Target("within 1.5x of the larger floor", worst <= 1.5, ", ".join(parts)))
    return targets


def plot_fanout(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [int(n) for n in res["sizes"]]
    runs = list(res["sizes"].values())
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    styles = {"ours": ("C0", "o", "-"), "threads": ("C1", "s", "-"), "sequential": ("C3", "^", "-")}
    labels = {
        "ours": "ours (signed posts, urllib3 pool, 32 threads)",
        "threads": "boto3 client, 32 threads",
        "sequential": "boto3 client, sequential (replaced proxy)",
    }
    for i, key in enumerate(("ours", "threads", "sequential")):
        xs = sizes
        ys = [r[i]["wall_s"] for r in runs]
        color, marker, line = styles[key]
        ax.plot(xs, ys, color=color, marker=marker, linestyle=line, label=labels[key])
        for x, r in zip(xs, runs, strict=True):
            if r[i]["extrapolated"]:
                ax.plot([x], [r[i]["wall_s"]], marker=marker, color="white", markeredgecolor=color, ms=9)
                ax.annotate(
                    f"extrapolated from {r[i]['measured']} posts",
                    (x, r[i]["wall_s"]),
                    textcoords="offset points",
                    xytext=(-150, -4),
                    fontsize=8,
                )
    latency = [fanout_floors(res, n, r[0]["cpu_ms_per_post"])[0] for n, r in zip(sizes, runs, strict=True)]
    cpu = [fanout_floors(res, n, r[0]["cpu_ms_per_post"])[1] for n, r in zip(sizes, runs, strict=True)]
    ax.plot(
        sizes, latency, color="grey", linestyle="--", label=f"latency floor (N x 20 ms / {res['workers']})"
    )
    ax.plot(sizes, cpu, color="grey", linestyle=":", label="CPU floor (N x ours' CPU/post / cores)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("connections in the channel")
    ax.set_ylabel("fan-out wall time (s)")
    ax.set_title("Fan-out to one channel, Management API at 20 ms per post")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- lookup --------------------------------------------------------------------


def lookup_lines(res: dict[str, Any]) -> list[str]:
    lines = [
        "Lookup: DynamoDB items read (sum of ScannedCount) to find one $default's connection",
        f"{'others':>8}  {'ours (GSI Query)':>18}  {'baseline (Scan+filter)':>24}  {'ratio':>9}",
    ]
    for row in res["rows"]:
        lines.append(
            f"{row['others']:>8,}  {row['ours']['items']:>6} in {row['ours']['calls']} call   "
            f"{row['baseline']['items']:>10,} in {row['baseline']['calls']:>2} calls    "
            f"{row['ratio']:>8,.0f}x"
        )
    warm = sorted({row["warm"]["items"] for row in res["rows"] if "warm" in row})
    if warm:
        lines.append(
            "the same connection's next message in a warm container (registry cache): "
            f"{'/'.join(map(str, warm))} item(s)"
        )
    if res["skipped"]:
        lines.append(f"not measured (time budget): {res['skipped']}")
    return lines


def lookup_targets(res: dict[str, Any]) -> list[Target]:
    counts = {row["ours"]["items"] for row in res["rows"]}
    return [
        Target(
            "lookup constant, 1 item",
            counts == {1},
            "ours read {} item(s) at every size; the Scan read {}".format(
                "/".join(str(c) for c in sorted(counts)),
                ", ".join(f"{row['baseline']['items']:,}" for row in res["rows"]),
            ),
        )
    ]


# -- overhead ------------------------------------------------------------------


def overhead_lines(res: dict[str, Any]) -> list[str]:
    def row(name: str, key: str) -> str:
        return f"  {name:<54} {res[key]['median_ms']:>7.2f} {res[key]['p99_ms']:>7.2f}"

    return [
        f"Per-message overhead: {res['messages']:,} $default messages through app.message "
        f"(after {res['warmup']} warm-up), each a broadcast to a channel of {res['channel']}",
        f"  {'ms per message':<54} {'median':>7} {'p99':>7}",
        row("handler (app.message, whole)", "handler"),
        row("  in backend (BackendClient.post)", "backend"),
        row("  in Management API (gateway post/fan_out)", "management_api"),
        row("  in DynamoDB calls (botocore + moto server, loopback)", "dynamodb"),
        row("    of which botocore CPU in this process", "dynamodb_client_cpu"),
        row("overhead = handler - backend - Management API", "overhead"),
        row("overhead without moto's server time", "overhead_without_dynamodb_server"),
        row("process CPU per message (all threads)", "cpu_per_message"),
    ]


def overhead_targets(res: dict[str, Any]) -> list[Target]:
    median = res["overhead"]["median_ms"]
    own = res["overhead_without_dynamodb_server"]["median_ms"]
    return [
        Target(
            "per-message overhead median <= 5 ms",
            median <= 5.0,
            f"{median:.2f} ms median, p99 {res['overhead']['p99_ms']:.2f} ms "
            f"(of which DynamoDB calls {res['dynamodb']['median_ms']:.2f} ms; "
            f"{own:.2f} ms without moto's server time)",
        ),
        Target(
            "  the same, without moto's server time (botocore's CPU kept)",
            own <= 5.0,
            f"{own:.2f} ms median, p99 {res['overhead_without_dynamodb_server']['p99_ms']:.2f} ms",
        ),
    ]


# -- cold start and package ------------------------------------------------------


def coldstart_lines(res: dict[str, Any]) -> list[str]:
    lines = [
        f"Cold start: median of {res['runs']} fresh interpreters each, alternating; "
        f"dependencies = `{res['dependencies_stmt']}`"
    ]
    titles = {
        "cached": "byte-code cached for all (judged)",
        "source": "app + chalicelib compiled from source (PYTHONDONTWRITEBYTECODE=1)",
    }
    for mode, title in titles.items():
        m = res[mode]
        spread = m["import_ms_spread"]
        lines += [
            f"  {title}:",
            f"    import app          {m['import_ms']['app']:7.1f} ms (spread {spread['app'][0]:.0f}-"
            f"{spread['app'][1]:.0f}); whole process {m['process_ms']['app']:.0f} ms",
            f"    dependencies only   {m['import_ms']['dependencies']:7.1f} ms (spread "
            f"{spread['dependencies'][0]:.0f}-{spread['dependencies'][1]:.0f}); "
            f"whole process {m['process_ms']['dependencies']:.0f} ms",
            f"    ratio {m['ratio']:.3f}x (whole process {m['process_ratio']:.3f}x)",
        ]
    return lines


def coldstart_targets(res: dict[str, Any]) -> list[Target]:
    cached, source = res["cached"], res["source"]
    return [
        Target(
            "cold start <= 1.15x of its dependencies",
            cached["ratio"] <= 1.15,
            f"{cached['ratio']:.3f}x ({cached['import_ms']['app']:.0f} ms "
            f"vs {cached['import_ms']['dependencies']:.0f} ms, byte-code cached); "
            f"{source['ratio']:.3f}x when app and chalicelib compile from source",
        )
    ]


def package_lines(res: dict[str, Any]) -> list[str]:
    largest = ", ".join(f"{name} {size / 1024:.0f} KB" for name, size in res["largest"])
    cached = " (chalice reused its cached dependency layer)" if res["reused_cached_dependencies"] else ""
    return [
        f"Package: deployment.zip {res['zip_bytes'] / 1024 / 1024:.2f} MiB ({res['zip_bytes']:,} bytes), "
        f"{res['uncompressed_bytes'] / 1024 / 1024:.1f} MiB unpacked, {res['files']} files{cached}",
        f"  largest (compressed): {largest}",
    ]
