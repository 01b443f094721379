"""Cold start: interpreter start to the first ``$default`` and the first ``$connect`` answered.

Each sample is a fresh ``python -c`` process that imports ``app`` and runs one
event, as on a new Lambda container:

- ``$default`` through ``app.message``: a chat message that the backend stand-in
  answers with ``broadcast: true`` to a channel of 4 in moto (own process), so
  the first message builds every client (DynamoDB, backend, Management API and
  the transport's event loop) and opens every connection;
- ``$connect`` through ``app.connect``: a chat connection the backend stand-in
  accepts with a history, so it is checked with the backend, written to moto and
  its history handed to the ``deliver`` function (Lambda's Invoke API, a stand-in).
 Judged by the child's CPU time when the answer comes
(``time.process_time``: every thread, from the interpreter's start), which a
shared machine's load disturbs far less than wall time; wall time is shown too,
inside the child (its first line to the answer) and from the parent (process
start to exit).

The baseline is the same files (``app.py``, ``chalicelib/``) at another commit,
extracted with ``git archive`` into a temporary directory (``bench.baseline``:
``BENCH_BASELINE_REF``, else where this branch left ``main``, else, on ``main``, the code
this round began from). Samples alternate between the two after a warm-up of
each; medians. Judged with byte-code cached for everything (a temporary
``PYTHONPYCACHEPREFIX``); also shown with ``PYTHONDONTWRITEBYTECODE=1``, where
``app.py`` and ``chalicelib`` compile at every start, as they do on Lambda
(``chalice package`` ships no ``.pyc``).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.baseline import baseline_ref, extract
from bench.invoke import ids_for
from bench.part import Target, part_main
from bench.servers import (
    DUMMY_AWS_ENV,
    PY,
    ROOT,
    moto_server,
    seed_channel,
    standin,
    standin_stats,
    use_dummy_aws_env,
)

RUNS = 11
TABLE = "bench-coldstart-connections"
CHANNEL = "b-cold"
#: The same channel for the baseline code, stored as that code stores channels.
BASE_CHANNEL = "b-cold-base"
LIMIT = 1.10
#: The cold start to the first $connect and to the first $default: at most this much of the baseline's CPU.
COLD_TARGET = 0.6
#: The Lambda runtime this code left (python3.11, deprecated 2026-06-30): its cold start is
#: measured beside this interpreter's when an interpreter for it is found.
OLD_RUNTIME = "3.11"

#: The ``$connect`` of a sample: a chat connection to this booking.
CONNECT_BOOKING = "cold1"

_PROGRAM = """
import time
_t = time.perf_counter()
import json, sys
import app
route = sys.argv[2]
event = {
    "requestContext": {
        "routeKey": route, "eventType": "MESSAGE" if route == "$default" else "CONNECT",
        "connectionId": sys.argv[1], "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
        "stage": "development", "apiId": "abc123", "requestId": "r1",
        "requestTimeEpoch": int(time.time() * 1000),
    },
    "isBase64Encoded": False,
}
if route == "$default":
    event["requestContext"]["messageId"] = "m1"
    event["body"] = json.dumps({"body": "Hello", "client_id": "k1"})
else:
    headers = {
        "Host": "abc123.execute-api.us-east-1.amazonaws.com", "Origin": "https://app.example.com",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
    }
    query = {"type": "chat", "booking_id": sys.argv[3], "token": "t0k"}
    event["headers"] = headers
    event["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
class Context:
    function_name = "ws-proxy-bench-websocket_message"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ws-proxy-bench-websocket_message"
    log_group_name = "/aws/lambda/ws-proxy-bench-websocket_message"
    log_stream_name = "bench"
    aws_request_id = "r1"
    def get_remaining_time_in_millis(self):
        return 28000
answer = (app.message if route == "$default" else app.connect)(event, Context())
elapsed = time.perf_counter() - _t
cpu = time.process_time()  # this process's CPU since the interpreter started, every thread
result = {"seconds": elapsed, "cpu": cpu, "status": answer.get("statusCode")}
sys.stderr.write("RESULT " + json.dumps(result) + "\\n")
"""


def sample(
    cwd: Path, env: dict[str, str], channel: str, python: str = PY, route: str = "$default"
) -> tuple[float, float, float]:
    """(import + first event, CPU from start to the answer, whole process) in seconds."""
    started = time.perf_counter()
    completed = subprocess.run(
        [python, "-c", _PROGRAM, ids_for(channel, 1)[0], route, CONNECT_BOOKING],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    whole = time.perf_counter() - started
    results = [line for line in completed.stderr.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not results:
        raise RuntimeError(f"cold start sample failed in {cwd}: {completed.stderr[-1500:]}")
    result = json.loads(results[-1][len("RESULT ") :])
    if result["status"] != 200:
        raise RuntimeError(f"the first {route} answered {result}")
    return float(result["seconds"]), float(result["cpu"]), whole


def measure(
    trees: dict[str, Path],
    env: dict[str, str],
    runs: int,
    pythons: dict[str, str] | None = None,
    route: str = "$default",
) -> dict[str, Any]:
    """Medians per tree, alternating; ``pythons`` runs a tree under another interpreter."""
    channels = {name: BASE_CHANNEL if name == "baseline" else CHANNEL for name in trees}
    python = {name: (pythons or {}).get(name, PY) for name in trees}
    for name, tree in trees.items():
        sample(tree, env, channels[name], python[name], route)
    inside: dict[str, list[float]] = {name: [] for name in trees}
    cpu: dict[str, list[float]] = {name: [] for name in trees}
    whole: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(runs):
        for name, tree in trees.items():
            first, used, process = sample(tree, env, channels[name], python[name], route)
            inside[name].append(first * 1000)
            cpu[name].append(used * 1000)
            whole[name].append(process * 1000)

    def median(values: dict[str, list[float]]) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in values.items()}

    names = list(trees)
    return {
        "names": names,
        "first_ms": median(inside),
        "first_spread": {k: [min(v), max(v)] for k, v in inside.items()},
        "cpu_ms": median(cpu),
        "cpu_spread": {k: [min(v), max(v)] for k, v in cpu.items()},
        "whole_ms": median(whole),
        "ratio": statistics.median(cpu[names[0]]) / statistics.median(cpu[names[1]]),
        "wall_ratio": statistics.median(inside[names[0]]) / statistics.median(inside[names[1]]),
    }


def older_python() -> str | None:
    """Lambda's previous runtime's interpreter (``OLD_PYTHON``), on PATH or in pyenv's versions."""
    candidates = [os.environ.get("OLD_PYTHON", ""), shutil.which(f"python{OLD_RUNTIME}") or ""]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False).stdout.strip()
        pattern = f"versions/{OLD_RUNTIME}*/bin/python{OLD_RUNTIME}"
        candidates += sorted(str(p) for p in Path(root).glob(pattern))
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", ""], capture_output=True, check=False).returncode == 0:
            return candidate
    return None


def run(runs: int = RUNS) -> dict[str, Any]:
    use_dummy_aws_env()
    import boto3

    from infra.table import ensure_table

    ref = baseline_ref()
    with (
        standin(0.0) as stand,
        moto_server() as moto,
        tempfile.TemporaryDirectory(prefix="bench-base-") as base,
    ):
        client = boto3.client("dynamodb", endpoint_url=moto.base)
        ensure_table(client, TABLE)
        commit = extract(ref, Path(base))
        seed_channel(client, TABLE, CHANNEL, ids_for(CHANNEL, 4))
        # the baseline's channel as that code stores channels (with a kind since channel_key)
        kinds = "def channel_key" in (Path(base) / "chalicelib" / "routes.py").read_text()
        seed_channel(client, TABLE, BASE_CHANNEL, ids_for(BASE_CHANNEL, 4), kinds=kinds)
        env = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
        }
        env.update(DUMMY_AWS_ENV)
        env.update(
            {
                "BACKEND_URL": stand.base,
                "API_GATEWAY_ENDPOINT": f"{stand.base}/development",
                "CONNECTIONS_TABLE": TABLE,
                "AWS_ENDPOINT_URL_DYNAMODB": moto.base,
                "AWS_ENDPOINT_URL_LAMBDA": stand.base,
                "DELIVER_FUNCTION_NAME": "ws-proxy-bench-deliver",
                "PYTHONPATH": "",
            }
        )
        trees = {"this": ROOT, "baseline": Path(base)}
        posts = standin_stats(stand.base)["posts"]
        with tempfile.TemporaryDirectory(prefix="bench-pycache-") as prefix:
            cached = measure(trees, {**env, "PYTHONPYCACHEPREFIX": prefix}, runs)
        source = measure(trees, {**env, "PYTHONDONTWRITEBYTECODE": "1"}, runs)
        # every first $default really was a broadcast to its channel of 4, in both trees
        expected = 2 * (runs + 1) * len(trees) * 4
        if standin_stats(stand.base)["posts"] - posts != expected:
            raise RuntimeError(f"the first messages did not each reach their channel of 4 ({expected} posts)")
        connect = measure(trees, {**env, "PYTHONDONTWRITEBYTECODE": "1"}, runs, route="$connect")
        # The same code under the previous Lambda runtime's Python, on the same (pure-Python)
        # packages: this venv's site-packages, which app imports nothing compiled from.
        old = older_python()
        runtimes = None
        if old is not None:
            here = f"python{sys.version_info[0]}.{sys.version_info[1]}"
            site = sysconfig.get_paths()["purelib"]
            with tempfile.TemporaryDirectory(prefix="bench-pycache-") as prefix:
                runtimes = measure(
                    {here: ROOT, f"python{OLD_RUNTIME}": ROOT},
                    {**env, "PYTHONPYCACHEPREFIX": prefix, "PYTHONPATH": site},
                    runs,
                    {f"python{OLD_RUNTIME}": old},
                )
    return {
        "runs": runs,
        "baseline": commit,
        "cached": cached,
        "source": source,
        "connect": connect,
        "runtimes": runtimes,
    }


def lines(res: dict[str, Any]) -> list[str]:
    out = [
        (
            "Cold start: interpreter start to the first $default answered (a broadcast to 4), "
            "this code against "
            f"{res['baseline']}; median of {res['runs']} fresh interpreters each, alternating; CPU is the "
            "process's own (every thread), wall is the import and the first message"
        )
    ]
    titles = {
        "cached": "$default, byte-code cached for all",
        "source": "$default, app + chalicelib compiled from source (PYTHONDONTWRITEBYTECODE=1, as on Lambda)",
        "connect": "$connect, compiled from source as on Lambda (checked, stored, history handed to deliver)",
    }
    for mode, title in titles.items():
        if mode not in res:
            continue
        m = res[mode]
        out.append(f"  {title}:")
        for name in ("this", "baseline"):
            cpu, wall = m["cpu_spread"][name], m["first_spread"][name]
            out.append(
                f"    {name:<9} CPU {m['cpu_ms'][name]:6.0f} ms ({cpu[0]:.0f}-{cpu[1]:.0f}); "
                f"wall {m['first_ms'][name]:6.0f} ms ({wall[0]:.0f}-{wall[1]:.0f}); "
                f"whole process {m['whole_ms'][name]:.0f} ms"
            )
        out.append(f"    ratio: CPU {m['ratio']:.3f}x, wall {m['wall_ratio']:.3f}x")
    m = res.get("runtimes")
    if m is None:
        out.append(f"  this code under python{OLD_RUNTIME}: not measured (no python{OLD_RUNTIME} found)")
        return out
    new, old = m["names"]
    out.append(f"  this code under {new} against {old} (byte-code cached, the same packages):")
    for name in (new, old):
        cpu, wall = m["cpu_spread"][name], m["first_spread"][name]
        out.append(
            f"    {name:<10} CPU {m['cpu_ms'][name]:6.0f} ms ({cpu[0]:.0f}-{cpu[1]:.0f}); "
            f"wall {m['first_ms'][name]:6.0f} ms ({wall[0]:.0f}-{wall[1]:.0f})"
        )
    out.append(f"    ratio: CPU {m['ratio']:.3f}x, wall {m['wall_ratio']:.3f}x")
    return out


def targets(res: dict[str, Any]) -> list[Target]:
    cached, source = res["cached"], res["source"]
    found = [
        Target(
            f"cold start within +10% of {res['baseline']} (CPU from interpreter start to the first answer)",
            cached["ratio"] <= LIMIT,
            f"{cached['ratio']:.3f}x ({cached['cpu_ms']['this']:.0f} ms vs "
            f"{cached['cpu_ms']['baseline']:.0f} ms, byte-code cached); {source['ratio']:.3f}x compiled "
            f"from source; wall {cached['wall_ratio']:.3f}x and {source['wall_ratio']:.3f}x",
        )
    ]
    for route, mode in (("$connect", "connect"), ("$default", "source")):
        if mode not in res:
            continue
        m = res[mode]
        found.append(
            Target(
                f"cold start to the first {route} <= {COLD_TARGET}x {res['baseline']}'s CPU "
                "(compiled from source)",
                m["ratio"] <= COLD_TARGET,
                f"{m['ratio']:.3f}x ({m['cpu_ms']['this']:.0f} ms vs {m['cpu_ms']['baseline']:.0f} ms, "
                f"the same run); wall {m['wall_ratio']:.3f}x",
            )
        )
    return found


NOTE = "- **Cold start**: " + " ".join(" ".join(p.split()) for p in (__doc__ or "").split("\n\n")[1:])

if __name__ == "__main__":
    part_main(__name__)
