"""The testing helper as docs/testing.md offers it: its example as written, and the reset.

Each case runs pytest in a subprocess on a test file of its own, as a user's suite
would run: with the plugin's fixtures, from the checkout's root.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.harness import refused_port

ROOT = Path(__file__).resolve().parents[2]
TESTING_MD = (ROOT / "docs" / "testing.md").read_text()


def example() -> str:
    """The first Python block after "A complete example" in docs/testing.md."""
    section = TESTING_MD[TESTING_MD.index("## A complete example") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "no python block in testing.md's example"
    return match.group(1)


def run_pytest(test_file: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", str(test_file), *args],
        cwd=ROOT,  # the app is imported from the checkout's root, as docs/testing.md says
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_example_in_testing_md_passes_as_written(tmp_path: Path) -> None:
    test_file = tmp_path / "test_chat_with_chalice.py"
    test_file.write_text(example())
    done = run_pytest(test_file)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


#: Two tests: the first restricts the origins and is refused; the second expects the
#: default (any origin) and reaches the backend, which is down: 502. {fixture} is the
#: plugin's ws_proxy_app, or one that sets the same environment without the reset.
LEAKING_SETTING = """
import os

import pytest
from chalice.test import Client

from ws_proxy_testing import connect_event, environment, use_environment

pytest_plugins = ["ws_proxy_testing.pytest_plugin"]

CHAT = {{"type": "chat", "booking_id": "42", "token": "t"}}


@pytest.fixture
def ws_proxy_environment():
    return environment(backend_url=f"http://127.0.0.1:{{os.environ['REFUSED_PORT']}}")


@pytest.fixture
def environment_only(ws_proxy_environment, monkeypatch):
    import app

    use_environment(monkeypatch, ws_proxy_environment)
    return app.app


def test_restricted_origins_refuse_the_handshake({fixture}, monkeypatch):
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://admin.example.com")
    with Client({fixture}, stage_name="test") as client:
        answer = client.lambda_.invoke("connect", connect_event("A1=", CHAT))
    assert answer.payload["statusCode"] == 403


def test_any_origin_reaches_the_backend({fixture}):
    with Client({fixture}, stage_name="test") as client:
        answer = client.lambda_.invoke("connect", connect_event("B1=", CHAT))
    assert answer.payload["statusCode"] == 502
"""


def test_a_setting_one_test_changes_does_not_reach_the_next(tmp_path: Path) -> None:
    with_fixture, without = tmp_path / "test_with_fixture.py", tmp_path / "test_without_reset.py"
    with_fixture.write_text(LEAKING_SETTING.format(fixture="ws_proxy_app"))
    without.write_text(LEAKING_SETTING.format(fixture="environment_only"))
    # the shell's own ALLOWED_ORIGINS never reaches a test either
    with refused_port() as port:
        env = {"REFUSED_PORT": str(port), "ALLOWED_ORIGINS": "https://admin.example.com"}
        fixed = run_pytest(with_fixture, **env)
        leaked = run_pytest(without, **env)
        alone = run_pytest(without, "-k", "any_origin", **env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "2 passed" in fixed.stdout
    # Without the reset, the second test runs on the first one's clients and settings:
    # it passes alone, and fails after the first.
    assert "1 failed, 1 passed" in leaked.stdout, leaked.stdout + leaked.stderr
    assert "FAILED" in leaked.stdout
    assert "test_without_reset.py::test_any_origin_reaches_the_backend" in leaked.stdout
    assert "assert 403 == 502" in leaked.stdout  # refused for the origins of the test before
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "1 passed" in alone.stdout
