"""Both deploy paths run on a Lambda runtime AWS supports for at least 180 more days.

The export's functions and what ``chalice deploy`` would choose (Chalice takes the
runtime from the interpreter that runs it) are read and held to infra/runtimes.py's
table of AWS's published dates; a doctored export on python3.11 must fail.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra import runtimes

TODAY = dt.datetime.now(dt.UTC).date()
ROOT = Path(__file__).resolve().parents[2]


def test_every_function_in_the_export_runs_python3_13(export_dir: Path) -> None:
    found = runtimes.export_runtimes(export_dir)
    assert len(found) == 6, found
    assert set(found.values()) == {"python3.13"}
    assert runtimes.check(found, TODAY) == []


def test_chalice_deploy_chooses_a_supported_runtime_under_this_interpreter() -> None:
    assert runtimes.chalice_runtime() == f"python{sys.version_info[0]}.{sys.version_info[1]}"
    assert runtimes.check({"chalice deploy": runtimes.chalice_runtime()}, TODAY) == []


def test_the_check_fails_on_an_export_doctored_to_python3_11(export_dir: Path, tmp_path: Path) -> None:
    doctored = tmp_path / "terraform"
    doctored.mkdir()
    for path in export_dir.glob("*.tf.json"):
        shutil.copy(path, doctored / path.name)
    chalice_tf = doctored / "chalice.tf.json"
    config = json.loads(chalice_tf.read_text())
    config["resource"]["aws_lambda_function"]["websocket_message"]["runtime"] = "python3.11"
    chalice_tf.write_text(json.dumps(config))

    run = subprocess.run(
        [sys.executable, "-m", "infra.runtimes", "--export", str(doctored)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        (
            "error: websocket_message: python3.11 (Amazon Linux 2) is deprecated since 2026-06-30; "
            "AWS refuses function updates from 2026-08-31: build with Python 3.13 (the Makefile's PYTHON)"
        )
    ]


def test_the_check_passes_on_the_export_as_built(export_dir: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "infra.runtimes", "--export", str(export_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout == "runtimes: python3.13, supported past 180 days\n"


@pytest.mark.parametrize(
    ("runtime", "today", "expected"),
    [
        ("python3.13", dt.date(2028, 12, 31), None),  # 181 days before 2029-06-30
        ("python3.13", dt.date(2029, 1, 1), "in 180 days"),
        ("python3.13", dt.date(2029, 6, 30), "deprecated since 2029-06-30"),
        ("python3.12", dt.date(2026, 12, 6), None),
        ("python3.11", dt.date(2026, 1, 1), "in 180 days"),
        ("python3.11", dt.date(2025, 12, 1), None),
        ("python3.8", dt.date(2026, 12, 6), "not in infra/runtimes.py's SCHEDULE"),
        ("nodejs22.x", dt.date(2026, 12, 6), "not in infra/runtimes.py's SCHEDULE"),
    ],
)
def test_a_runtime_within_180_days_of_deprecation_or_unknown_is_refused(
    runtime: str, today: dt.date, expected: str | None
) -> None:
    why = runtimes.problem(runtime, today)
    if expected is None:
        assert why is None
    else:
        assert why is not None
        assert expected in why


def test_an_export_with_no_function_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "main.tf.json").write_text('{"resource": {}}')
    assert runtimes.main(["--export", str(tmp_path)]) == 1


def test_every_runtime_in_the_schedule_is_blocked_after_its_deprecation() -> None:
    for name, support in runtimes.SCHEDULE.items():
        assert name.startswith("python3.")
        assert support.block_update > support.deprecation


def make_python(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``make venv`` into a scratch directory with ``env``, as a fresh machine would run it."""
    return subprocess.run(
        ["make", "--no-print-directory", "venv", f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_makefile_builds_the_venv_with_python_3_13_or_3_12() -> None:
    run = subprocess.run(
        ["make", "--no-print-directory", "-p", "-n", "help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    lines = run.stdout.splitlines()
    chosen = [line.split(":=", 1)[1].strip() for line in lines if line.startswith("PYTHON :=")]
    assert len(chosen) == 1, chosen
    version = subprocess.run(
        [chosen[0], "-c", "import sys; print(*sys.version_info[:2], sep='.')"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version in ("3.13", "3.12")
    # This test runs in .venv, which make built with that interpreter.
    assert version == f"{sys.version_info[0]}.{sys.version_info[1]}"


def test_without_python_3_13_or_3_12_make_says_what_to_install_in_one_line(tmp_path: Path) -> None:
    run = make_python({"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, tmp_path)
    assert run.returncode == 2
    assert run.stdout.splitlines() == [
        (
            "error: no Python 3.13 found (nor 3.12, the oldest accepted: it deploys python3.12): "
            "install 3.13 (pyenv install 3.13, or your system's python3.13 package), "
            "or pass PYTHON=/path/to/python3.13"
        )
    ]
    assert not (tmp_path / "venv").exists()
