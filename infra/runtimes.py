"""Lambda's Python runtimes and their end of support: refuse to ship one that is dying.

    python -m infra.runtimes --export build/terraform      (``make package`` runs this check)

Chalice takes the Lambda runtime from the interpreter that runs it
(``chalice.config.Config.lambda_python_version``), so both deploy paths get
``python3.X`` from ``.venv``'s Python. ``check`` fails when a runtime is
deprecated on the build date, or will be within ``WARNING_DAYS``: after the
deprecation date AWS stops patching it, then blocks creating and finally
updating functions on it, and neither moto nor ``terraform validate`` can show
that.

The dates are AWS's published schedule, "Lambda runtimes", the table "Supported
runtimes" and "Deprecated runtimes" (docs.aws.amazon.com/lambda/latest/dg/
lambda-runtimes.html), read on 2026-12-06. When AWS moves a date or adds a
runtime, update ``SCHEDULE`` and the date it was read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from chalice.config import Config

#: Warn this long before deprecation: a release cut today must outlive a few months of use.
WARNING_DAYS = 180


@dataclass(frozen=True)
class Support:
    """One runtime's published dates (block_update: the last day functions can still be updated)."""

    os: str
    deprecation: dt.date
    block_update: dt.date


SCHEDULE: dict[str, Support] = {
    "python3.10": Support("Amazon Linux 2", dt.date(2026, 6, 30), dt.date(2026, 8, 31)),
    "python3.11": Support("Amazon Linux 2", dt.date(2026, 6, 30), dt.date(2026, 8, 31)),
    "python3.12": Support("Amazon Linux 2023", dt.date(2028, 10, 31), dt.date(2029, 1, 10)),
    "python3.13": Support("Amazon Linux 2023", dt.date(2029, 6, 30), dt.date(2029, 8, 31)),
    "python3.14": Support("Amazon Linux 2023", dt.date(2029, 6, 30), dt.date(2029, 8, 31)),
}


def problem(runtime: str, today: dt.date) -> str | None:
    """Why ``runtime`` must not ship on ``today``, or None when it may."""
    support = SCHEDULE.get(runtime)
    if support is None:
        return f"{runtime}: not in infra/runtimes.py's SCHEDULE (add its published dates)"
    if today >= support.deprecation:
        return (
            f"{runtime} ({support.os}) is deprecated since {support.deprecation}; AWS refuses function "
            f"updates from {support.block_update}: build with Python 3.13 (the Makefile's PYTHON)"
        )
    left = (support.deprecation - today).days
    if left <= WARNING_DAYS:
        return (
            f"{runtime} ({support.os}) is deprecated on {support.deprecation}, in {left} days "
            f"(less than {WARNING_DAYS}): move to a newer runtime before shipping"
        )
    return None


def export_runtimes(export_dir: Path) -> dict[str, str]:
    """Every ``aws_lambda_function`` in a Terraform export (any ``*.tf.json``) -> its runtime."""
    found: dict[str, str] = {}
    for path in sorted(export_dir.glob("*.tf.json")):
        resources = json.loads(path.read_text()).get("resource", {})
        for name, body in resources.get("aws_lambda_function", {}).items():
            found[name] = str(body.get("runtime", "<none>"))
    return found


def chalice_runtime() -> str:
    """The runtime ``chalice deploy`` and ``chalice package`` choose under this interpreter."""
    return str(Config.create().lambda_python_version)


def check(runtimes: dict[str, str], today: dt.date) -> list[str]:
    """One line per function whose runtime must not ship; empty when all may."""
    return [f"{name}: {why}" for name, rt in sorted(runtimes.items()) if (why := problem(rt, today))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, help="a Terraform export (make package's build/terraform)")
    args = parser.parse_args(argv)
    runtimes = {"chalice deploy": chalice_runtime()}
    if args.export:
        functions = export_runtimes(args.export)
        if not functions:
            print(f"error: no aws_lambda_function in {args.export}", file=sys.stderr)
            return 1
        runtimes.update(functions)
    errors = check(runtimes, dt.datetime.now(dt.UTC).date())
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if not errors:
        print(f"runtimes: {', '.join(sorted(set(runtimes.values())))}, supported past {WARNING_DAYS} days")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
