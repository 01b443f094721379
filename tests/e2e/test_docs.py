"""The docs as a reader follows them: the README's raw session, what a restart does, the flags.

The raw session (``hello.py``) is taken from README.md as written, saved outside the
checkout and run against the stack on ports other than ``make run``'s, found the two
ways the README gives: the port variables and the stack's ready file.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from local_gateway.__main__ import parse_args
from tests.e2e.support import ROOT, StackProcess, open_socket, quiet_ports, run, token

pytestmark = pytest.mark.e2e

README = (ROOT / "README.md").read_text()


def raw_session() -> str:
    """The first Python block after "A raw session" in README.md."""
    section = README[README.index("**3. A raw session.**") :]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "no python block in the README's raw session"
    return match.group(1)


def run_hello(tmp_path: Path, **env: str) -> list[Any]:
    script = tmp_path / "hello.py"  # outside the checkout, as the README suggests
    script.write_text(raw_session())
    clean = {k: v for k, v in os.environ.items() if k not in {"READY_FILE", "GATEWAY_PORT", "BACKEND_PORT"}}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [ast.literal_eval(line) for line in done.stdout.splitlines()]


def assert_the_tour(frames: list[Any]) -> None:
    assert [f["type"] for f in frames] == ["history", "receipt", "message", "pong", "error"]
    history, receipt, message, _, error = frames
    assert history["thread"]["booking_id"] == "1"
    assert receipt["user_id"] == "alice"
    assert (message["ref"], message["message"]["body"], message["message"]["user_id"]) == (
        "m-1",
        "Hello",
        "alice",
    )
    assert error["code"] == "backend_error"
    assert "999999" in error["message"]


def test_the_raw_session_runs_as_written_with_the_ports_given(
    local_stack: StackProcess, tmp_path: Path
) -> None:
    gateway, backend = urlsplit(local_stack.gateway).port, urlsplit(local_stack.backend).port
    assert gateway not in (None, 3001)  # not make run's ports
    assert backend not in (None, 8000)
    assert_the_tour(run_hello(tmp_path, GATEWAY_PORT=str(gateway), BACKEND_PORT=str(backend)))


def test_the_raw_session_runs_as_written_from_the_ready_file(
    local_stack: StackProcess, tmp_path: Path
) -> None:
    ready = tmp_path / "stack.json"
    ready.write_text(json.dumps(local_stack.endpoints))  # what --ready-file writes
    assert_the_tour(run_hello(tmp_path, READY_FILE=str(ready)))


def test_the_raw_session_s_defaults_are_make_run_s() -> None:
    options, _ = parse_args([])
    code = raw_session()
    assert f"os.environ.get('GATEWAY_PORT', '{options.port}')" in code
    assert f"os.environ.get('BACKEND_PORT', '{options.backend_port}')" in code
    assert f'/{options.stage}"' in code


def test_a_restart_closes_every_socket_and_starts_the_backend_over(tmp_path: Path) -> None:
    """README, "Restarting make run": sockets closed (1001), the backend's state gone, tokens still good."""
    ports = quiet_ports()  # the restart below finds them free
    first = StackProcess("readme-restart", *ports)
    second: StackProcess | None = None
    try:
        alice = token(first, "alice")
        url = f"{first.endpoints['websocket']}?type=chat&booking_id=7&token={alice}"

        async def before() -> int:
            async with aiohttp.ClientSession() as session:
                sock = await open_socket(session, url)
                await sock.recv()  # history
                await sock.recv()  # receipt
                await sock.send({"body": "before the restart", "id": "b-1"})
                assert (await sock.recv())["ref"] == "b-1"
                first.proc.send_signal(signal.SIGINT)  # Ctrl-C
                closed = await sock.ws.receive(timeout=10)
                assert closed.type is aiohttp.WSMsgType.CLOSE
                return int(closed.data)

        assert run(before) == 1001
        assert first.stop() == 0
        second = StackProcess("readme-restart-2", *ports)

        async def after() -> list[str]:
            async with aiohttp.ClientSession() as session:
                sock = await open_socket(session, url)  # the token from before the restart
                history = await sock.recv()
                await sock.close()
                return [m["body"] for m in history["messages"]]

        assert run(after) == ["Welcome to booking 7! Check-in is from 3 pm."]
    finally:
        first.stop()
        if second is not None:
            assert second.stop() == 0


def test_local_stack_md_lists_every_flag_of_the_stack(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", capsys.readouterr().out)) - {"--help"}
    assert "--lambda-timeout" in flags
    table = (ROOT / "docs" / "local-stack.md").read_text()
    assert sorted(f for f in flags if f"`{f}" not in table) == []
