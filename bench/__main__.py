"""``python -m bench`` (``make bench``): every benchmark part, ours against its baseline.

Each part (``bench.part`` says what one is) runs as ``python -m bench.<part>
--json`` in a fresh interpreter of its own, starting and stopping its own
servers; its result becomes report lines and targets here, through
``bench.part.section``. A full run writes bench/RESULTS.md, bench/results.json
and bench/fanout.png. The exit status is non-zero only if a part could not run;
a missed target is reported, not failed.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.part import Target, section
from bench.servers import run_json

HERE = Path(__file__).resolve().parent
#: Every part, in run order, with its RESULTS.md heading.
PARTS = {
    "handler": "$default against AWS's Node.js approach",
    "fanout": "Fan-out",
    "signer": "Signer: hand-written against botocore",
    "projection": "Lambda projection",
    "push": "Server push to a large channel",
    "lookup": "Lookup cost",
    "overhead": "Per-message overhead",
    "coldstart": "Cold start",
    "package": "Package",
}
#: RESULTS.md text that is not a measurement (it explains how to read one).
PREFACE_FILE = HERE / "RESULTS.preface.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", help=f"comma list among {', '.join(PARTS)}; no files written")
    args = parser.parse_args(argv)
    names = list(PARTS) if not args.only else [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(names) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")

    started = time.monotonic()
    host = report.machine()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"# bench {when}: {host['nproc']} cores, {host['cpu']}, Python {host['python']}, load {host['load']}"
    )
    results: dict[str, Any] = {}
    sections: dict[str, tuple[str, list[str]]] = {}
    targets: list[Target] = []
    notes: list[str] = []
    failed: list[str] = []
    for name in names:
        print(f"\n== {name} ...", flush=True)
        part_started = time.monotonic()
        module = importlib.import_module(f"bench.{name}")
        try:
            results[name] = run_json(["-m", f"bench.{name}", "--json"], timeout=900)
        except Exception as exc:  # report and go on: the others can still run  # noqa: BLE001 - one part that fails is reported; the others still run
            print(f"!! {name} could not run: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        lines, found = section(module, results[name])
        lines.append(f"({time.monotonic() - part_started:.0f} s, load {report.machine()['load']})")
        sections[name] = (PARTS[name], lines)
        targets += found
        notes.append(module.NOTE)
        print("\n".join(lines), flush=True)

    print("\n== targets")
    for target in targets:
        print(target.line())
    load_after = report.machine()["load"]
    print(f"load average after: {load_after}; total {time.monotonic() - started:.0f} s")

    if not args.only and not failed:
        host["load_after"] = load_after
        if "fanout" in results:
            from bench import fanout

            fanout.plot(results["fanout"], HERE / "fanout.png")
        (HERE / "results.json").write_text(
            json.dumps({"date": when, "machine": host, "results": results}, indent=1) + "\n"
        )
        preface = [*PREFACE_FILE.read_text().splitlines(), ""] if PREFACE_FILE.exists() else []
        report.write_results(
            HERE / "RESULTS.md", when, host, sections, targets, notes, time.monotonic() - started, preface
        )
        print(f"wrote {HERE / 'RESULTS.md'}, {HERE / 'results.json'}, {HERE / 'fanout.png'}")
    if failed:
        print(f"could not run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
