"""What every benchmark part has, and how each is launched.

A part is a module ``bench.<name>`` with

- ``run() -> dict``: measures (starting and stopping its own servers) and answers
  JSON-able results;
- ``lines(result) -> list[str]``: the printed report of those results;
- ``targets(result) -> list[Target]``: the goals it is judged by (may be empty);
- ``NOTE``: how its figures are made (a paragraph of bench/RESULTS.md);
- ``main = part_main(__name__)`` under ``if __name__ == "__main__"``.

``python -m bench.<name>`` prints the part's report; ``--json`` prints only its
result as one JSON line, which is how ``python -m bench`` runs each part: in a
fresh interpreter of its own, then turns every result into lines and targets
with ``bench.report.section``, the one place report lines are made.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass
class Target:
    name: str
    met: bool
    detail: str

    def line(self) -> str:
        return f"[{'met' if self.met else 'MISSED'}] {self.name}: {self.detail}"


def section(module: ModuleType, result: dict[str, Any]) -> tuple[list[str], list[Target]]:
    """The report lines and the targets of one part's result."""
    lines: list[str] = module.lines(result)
    found: list[Target] = module.targets(result)
    return lines, found


def run_quietly(module: ModuleType) -> dict[str, Any]:
    """``module.run()`` with this process's stdout sent to /dev/null (handlers log there)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    real = sys.stdout
    os.dup2(devnull, 1)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    try:
        result: dict[str, Any] = module.run()
    finally:
        sys.stdout.close()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
        sys.stdout = real
    return result


def part_main(name: str) -> None:
    module = importlib.import_module(name)
    parser = argparse.ArgumentParser(prog=f"python -m {name}", description=module.__doc__)
    parser.add_argument("--json", action="store_true", help="print only the result, as one JSON line")
    args = parser.parse_args()
    result = run_quietly(module)
    if args.json:
        print(json.dumps(result), flush=True)
        return
    lines, found = section(module, result)
    print("\n".join(lines + [t.line() for t in found]), flush=True)
