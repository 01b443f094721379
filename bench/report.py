"""The machine a run is on, and bench/RESULTS.md from one run's sections."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.part import Target

COMMAND = "make bench   # = .venv/bin/python -m bench"
#: Sections of RESULTS.md that other runs write (``make reliability``); a bench run keeps them.
KEPT_HEADINGS = ("## Reliability",)


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


def write_results(
    path: Path,
    when: str,
    host: dict[str, Any],
    sections: dict[str, tuple[str, list[str]]],
    targets: list[Target],
    notes: list[str],
    seconds: float,
    preface: list[str] | None = None,
) -> None:
    """RESULTS.md: the targets, each part's lines as printed, how each figure is made."""
    out = [
        "# Benchmark results",
        "",
        f"One run of `{COMMAND}`, {when}, {seconds:.0f} s.",
        "",
        (
            f"Machine: {host['nproc']} cores (`nproc`), {host['cpu']}, Python {host['python']}; "
            f"load average {host['load']} before, {host.get('load_after', '?')} after "
            "(the machine is shared with other work: read the ratios, which come from the same run, "
            "rather than the absolute times)."
        ),
        "",
        *(preface or []),
        "## Targets",
        "",
        *[f"- {t.line()}" for t in targets],
        "",
    ]
    for title, lines in sections.values():
        out += [f"## {title}", "", "```", *lines, "```", ""]
        if title == "Fan-out":
            out += ["![fan-out time against channel size](fanout.png)", ""]
    out += ["## How each figure is made", "", *notes, ""]
    kept = _kept_sections(path)
    path.write_text("\n".join(out) + (("\n" + kept) if kept else ""))


def _kept_sections(path: Path) -> str:
    if not path.exists():
        return ""
    text = path.read_text()
    starts = [text.find(h) for h in KEPT_HEADINGS if text.find(h) >= 0]
    return text[min(starts) :] if starts else ""
