"""``make venv`` and ``make checkov-venv``: what they say, and how they install the locks.

The Makefile runs for real, with a stand-in interpreter (``PYTHON=``) whose ``-m venv``
makes a virtualenv of stand-ins: its ``python -m pip`` and ``uv`` record how they were
called (and what the requirement file held) instead of downloading, so the install
steps, their order, the hash checks and the fallback to pip are checked offline.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCK = (ROOT / "requirements-dev.txt").read_text()
CHECKOV_LOCK = "infra/requirements-checkov.txt"
UV_VERSION = re.search(r"^uv==(\S+)", LOCK, re.MULTILINE).group(1)  # type: ignore[union-attr]

#: The stand-in interpreter. As ``-m venv DIR`` it copies itself to DIR/bin/python; as
#: ``-m pip install ... -r FILE`` it logs the call and FILE, and when FILE is the uv
#: requirement, installs a stand-in uv (unless FAKE_UV_FAILS is set: then it fails, as
#: pip does where no uv wheel fits).
FAKE_PYTHON = r"""#!/bin/sh
log="$FAKE_LOG"
case "$1" in
  -V) echo "Python 3.13.0"; exit 0 ;;
  -c) exit 0 ;;
esac
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && echo "venv $3" >> "$log"; exit 0
fi
if [ "$1 $2 $3" = "-m pip install" ]; then
  echo "pip $*" >> "$log"
  for last; do :; done
  echo "--- $last" >> "$log"; cat "$last" >> "$log"; echo "---" >> "$log"
  case "$last" in
    *uv-requirement.txt)
      [ -n "$FAKE_UV_FAILS" ] && { echo "ERROR: no matching distribution for uv" >&2; exit 1; }
      dir=$(dirname "$0")
      printf '#!/bin/sh\nif [ "$1" = --version ]; then echo "uv %s"; exit 0; fi\necho "uv $*" >> "%s"\n' \
        "$FAKE_UV_VERSION" "$log" > "$dir/uv"
      chmod +x "$dir/uv" ;;
  esac
  exit 0
fi
echo "unexpected: $*" >> "$log"; exit 3
"""


@pytest.fixture
def fake(tmp_path: Path) -> dict[str, str]:
    python = tmp_path / "python3.13"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("INSTALL_WITH", "FAKE_")) and k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    }
    env.update(FAKE_LOG=str(tmp_path / "log"), FAKE_UV_VERSION=UV_VERSION)
    return env


def make(tmp_path: Path, env: dict[str, str], *targets: str, **variables: str) -> list[str]:
    command = [
        "make",
        "--no-print-directory",
        *targets,
        f"PYTHON={tmp_path / 'python3.13'}",
        f"VENV={tmp_path / 'venv'}",
        f"CHECKOV_VENV={tmp_path / 'checkov'}",
        *(f"{k}={v}" for k, v in variables.items()),
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def calls(tmp_path: Path) -> str:
    return (tmp_path / "log").read_text()


def lock_entry(name: str) -> str:
    """A package's lines in requirements-dev.txt: the pin and every hash."""
    match = re.search(rf"^{name}==.*?(?<!\\)\n", LOCK, re.MULTILINE | re.DOTALL)
    assert match
    return match.group(0)


def test_make_venv_says_each_step_and_installs_the_lock_with_the_lock_s_uv(
    tmp_path: Path, fake: dict[str, str]
) -> None:
    venv = tmp_path / "venv"
    lines = make(tmp_path, fake, "venv")
    packages = len(re.findall(r"^[a-z]", LOCK, re.MULTILINE))
    assert lines == [
        f"{venv}: creating it with Python 3.13.0 ({tmp_path / 'python3.13'})",
        f"{venv}: installing uv {UV_VERSION} with pip (pinned and hash-checked in requirements-dev.txt)",
        f"{venv}: installing requirements-dev.txt with uv {UV_VERSION} ({packages} packages, hashes checked)",
        f"{venv}: ready",
    ]
    log = calls(tmp_path)
    # pip installs only uv, from the lock's own pin and hashes, hash-checked ...
    assert f"pip -m pip install -q --require-hashes -r {venv}/uv-requirement.txt\n" in log
    assert f"--- {venv}/uv-requirement.txt\n{lock_entry('uv')}---\n" in log
    assert lock_entry("uv").count("--hash=sha256:") >= 2
    # ... and uv installs the lock, exactly and hash-checked; pip never sees the lock.
    assert f"uv pip sync -q --require-hashes --python {venv}/bin/python requirements-dev.txt\n" in log
    assert "-r requirements-dev.txt" not in log
    # Done: a second run does nothing.
    assert make(tmp_path, fake, "venv") == ["make: Nothing to be done for 'venv'."]


def test_where_uv_cannot_be_installed_pip_installs_the_lock(tmp_path: Path, fake: dict[str, str]) -> None:
    venv = tmp_path / "venv"
    lines = make(tmp_path, {**fake, "FAKE_UV_FAILS": "1"}, "venv")
    assert f"{venv}: uv {UV_VERSION} could not be installed; pip installs the rest" in lines
    assert lines[-2].startswith(f"{venv}: installing requirements-dev.txt with pip (")
    assert "pip -m pip install -q --require-hashes -r requirements-dev.txt\n" in calls(tmp_path)
    assert "uv pip" not in calls(tmp_path)


def test_install_with_pip_skips_uv(tmp_path: Path, fake: dict[str, str]) -> None:
    lines = make(tmp_path, fake, "venv", INSTALL_WITH="pip")
    assert not any(" uv " in line for line in lines), lines
    log = calls(tmp_path)
    assert "uv-requirement" not in log
    assert "pip -m pip install -q --require-hashes -r requirements-dev.txt\n" in log


def test_checkov_venv_is_installed_by_venv_s_uv(tmp_path: Path, fake: dict[str, str]) -> None:
    checkov = tmp_path / "checkov"
    packages = len(re.findall(r"^[a-z]", (ROOT / CHECKOV_LOCK).read_text(), re.MULTILINE))
    lines = make(tmp_path, fake, "checkov-venv")
    assert lines[-3:] == [
        f"{checkov}: creating it with Python 3.13.0 ({tmp_path / 'python3.13'})",
        f"{checkov}: installing {CHECKOV_LOCK} with uv {UV_VERSION} ({packages} packages, hashes checked)",
        f"{checkov}: ready",
    ]
    assert (
        f"uv pip sync -q --require-hashes --python {checkov}/bin/python infra/requirements-checkov.txt\n"
        in calls(tmp_path)
    )
