"""Per-message overhead: ``app.message`` time minus backend and Management API time.

The whole ``$default`` handler runs as Lambda would run it (Chalice's
``WebsocketEventSourceHandler``, Powertools' logger and metrics middleware,
the container's lazily built dependencies), against:

- a backend stand-in and a Management API stand-in (``bench.standin``, one
  process, both answering at once: stage ``instant``), keep-alive;
- moto's DynamoDB in its own process (``bench.servers.serve_moto``, keep-alive), reached through
  ``AWS_ENDPOINT_URL_DYNAMODB``, holding a channel of ``CHANNEL`` connections.

Each message is a chat frame the backend answers with ``broadcast: true``, so
a message is: one GSI Query, one backend POST, one channel Query, a fan-out to
the channel. Time spent inside ``BackendClient.post`` and the gateway's
``post``/``post_many`` is measured by wrapping them and subtracted; the time
inside DynamoDB calls (the client + moto over loopback) is reported beside it.

Each handler runs in a process of its own (``bench.invoke``, ``serve``), warm, and
``alternate`` runs two such processes' messages one by one; the handler's logs
(stdout, as in Lambda) go to /dev/null.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from bench.part import Target, part_main
from bench.servers import moto_server, standin, standin_stats, use_dummy_aws_env

MESSAGES = 1200
ROUNDS = 8
WARMUP = 20
CHANNEL = 4  # a booking's chat: the sender and three others
#: The common case: a booking of two, the sender and one other (each on a per-booking socket).
PAIR = 2
TABLE = "bench-overhead-connections"
TOKEN = "eyJhbGciOiJIUzI1NiJ9." + "x" * 280


class LambdaContext:
    function_name = "ws-proxy-dev-message"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ws-proxy-dev-message"
    log_group_name = "/aws/lambda/ws-proxy-dev-message"
    log_stream_name = "bench"

    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id

    def get_remaining_time_in_millis(self) -> int:
        return 28_000


def event(connection_id: str, body: str, i: int) -> dict[str, Any]:
    return {
        "requestContext": {
            "routeKey": "$default",
            "eventType": "MESSAGE",
            "messageId": f"m{i}",
            "connectionId": connection_id,
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "stage": "development",
            "apiId": "abc123",
            "requestId": f"r{i}",
            "requestTimeEpoch": int(time.time() * 1000),
        },
        "body": body,
        "isBase64Encoded": False,
    }


class Timer:
    """Accumulates wall time (and the process's CPU, every thread) inside wrapped calls, per kind.

    Every thread: a client may do its work on another thread (the transport's event loop),
    and nothing else runs in this process meanwhile (moto and the stand-ins have their own).
    """

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def reset(self) -> None:
        self.spent = {}

    def wrap(self, kind: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            cpu = time.process_time()
            started = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                spent = self.spent
                spent[kind] = spent.get(kind, 0.0) + time.perf_counter() - started
                spent[kind + "_cpu"] = spent.get(kind + "_cpu", 0.0) + time.process_time() - cpu
                spent[kind + "_calls"] = spent.get(kind + "_calls", 0.0) + 1

        return timed


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def prepare(
    standin_base: str, moto_base: str, channel: int = CHANNEL, *, user_level: bool = False
) -> Callable[[int], dict[str, float]]:
    """The handler in this process (``bench.invoke`` runs it, in this tree or the baseline's), its
    channel seeded: answers a function that runs message ``i`` and answers its times (seconds).

    With ``user_level`` (this code only), every socket is its user's own, subscribed to the
    booking, and each frame names the booking.
    """
    use_dummy_aws_env()
    os.environ.update(
        {
            "BACKEND_URL": standin_base,
            "API_GATEWAY_ENDPOINT": f"{standin_base}/instant",
            "CONNECTIONS_TABLE": TABLE,
            "AWS_ENDPOINT_URL_DYNAMODB": moto_base,
            "POWERTOOLS_SERVICE_NAME": "ws-proxy",
            "POWERTOOLS_METRICS_NAMESPACE": "WebSocketProxy",
        }
    )
    import app as app_module

    application: Any = app_module  # ours, or the baseline's (another shape)
    now = int(time.time())
    # a booking of its own for user-level sockets: both variants share the table
    booking = f"b-{1000 + channel}" + ("-u" if user_level else "")
    if hasattr(application, "get_clients"):  # clients in one dataclass (decae83 and later)
        from chalicelib.model import Connection
        from chalicelib.routes import channel_key

        # ids of their own: the baseline's items share the table
        ids = [f"kind{channel}-{i:06d}Q=" for i in range(channel)]
        clients = application.get_clients()
        registry, backend = clients.registry, clients.backend
        gateway = clients.gateway_for(clients.settings.endpoint_for("", ""))
        endpoint = clients.settings.api_gateway_endpoint
        if user_level:
            ids = [f"user{channel}-{i:06d}Q=" for i in range(channel)]
        for i, connection_id in enumerate(ids):
            own = channel_key("user", f"u{i}") if user_level else channel_key("booking", booking)
            registry.put(
                Connection(
                    connection_id,
                    own,
                    "chat",
                    f"u{i}",
                    TOKEN,
                    now,
                    now + 86400,
                    booking_id=None if user_level else booking,
                    endpoint=endpoint,
                )
            )
            if user_level:
                registry.subscribe(
                    Connection(
                        connection_id,
                        channel_key("booking", booking),
                        "chat",
                        f"u{i}",
                        None,
                        now,
                        now + 86400,
                        booking_id=booking,
                        endpoint=endpoint,
                        home=own,
                        types=frozenset({"chat"}),
                    )
                )
    else:  # the container of use cases (100751e, where this round began)
        from chalicelib.connection import Connection as Item  # type: ignore[import-not-found]
        from chalicelib.routes import channel_key

        ids = [f"case{channel}-{i:06d}Q=" for i in range(channel)]
        booking += "-c"  # a channel of its own: both trees share the table
        cases = application.container.use_cases()
        registry, backend = cases.registry, cases.backend
        gateway = cases.gateway_for(cases.settings.endpoint_for({}))
        endpoint = cases.settings.api_gateway_endpoint
        for i, connection_id in enumerate(ids):
            channel_of = channel_key("booking", booking)
            registry.put(
                Item(connection_id, channel_of, "chat", f"u{i}", TOKEN, now, now + 86400, booking, endpoint)
            )

    timer = Timer()
    backend.post = timer.wrap("backend", backend.post)
    gateway.post = timer.wrap("management_api", gateway.post)
    many = "post_many" if hasattr(gateway, "post_many") else "fan_out"  # 100751e's name
    setattr(gateway, many, timer.wrap("management_api", getattr(gateway, many)))
    registry._call = timer.wrap("dynamodb", registry._call)  # noqa: SLF001 - times DynamoDB at its one dispatcher
    extra = {"booking_id": booking} if user_level else {}

    def one(i: int) -> dict[str, float]:
        body = json.dumps({"body": f"Hello #{i}", "client_id": f"k{i}", **extra})
        timer.reset()
        cpu = time.process_time()
        started = time.perf_counter()
        answer = app_module.message(event(ids[i % channel], body, i), LambdaContext(f"req-{i}"))
        total = time.perf_counter() - started
        cpu = time.process_time() - cpu
        if answer.get("statusCode") != 200:
            raise RuntimeError(f"handler answered {answer}")
        spent = timer.spent
        return {
            "total": total,
            "backend": spent.get("backend", 0.0),
            "management_api": spent.get("management_api", 0.0),
            "dynamodb": spent.get("dynamodb", 0.0),
            "dynamodb_client_cpu": spent.get("dynamodb_cpu", 0.0),
            "dynamodb_calls": spent.get("dynamodb_calls", 0.0),
            "cpu": cpu,
        }

    return one


def serve(standin_base: str, moto_base: str, channel: int, out: TextIO, *, user_level: bool = False) -> None:
    """``prepare``, ``WARMUP`` messages, then ``{"ready": true}`` on ``out`` and one message per line
    read from stdin, its row written back on ``out`` (``alternate`` drives two such processes)."""
    one = prepare(standin_base, moto_base, channel, user_level=user_level)
    for i in range(WARMUP):
        one(i)
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for i, line in enumerate(sys.stdin, start=WARMUP):
        if line.strip():
            out.write(json.dumps(one(i)) + "\n")
            out.flush()


#: A handler process to start: its working directory (the tree whose ``app`` it imports), its
#: environment (None: this one's) and the ``bench.invoke`` spec it serves.
Launch = tuple[str, dict[str, str] | None, dict[str, Any]]


def alternate(
    launches: dict[str, Launch], messages: int, rounds: int, standin_base: str, moto_base: str
) -> dict[str, list[dict[str, float]]]:
    """Each launch's handler in a process of its own, ``rounds`` times a fresh pair (a new
    container), each warm after ``WARMUP`` messages: their messages alternate one by one (which
    goes first alternating too), so a change in the machine's load falls on both alike. Answers
    each launch's rows; checks that every message reached the backend and every post the stand-in.
    """
    import boto3

    from bench.servers import PY
    from infra.table import ensure_table

    ensure_table(boto3.client("dynamodb", endpoint_url=moto_base), TABLE)  # before either starts
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in launches}
    before = standin_stats(standin_base)
    per_round = -(-messages // rounds)
    for r in range(rounds):
        processes: dict[str, subprocess.Popen[str]] = {}
        try:
            for name, (cwd, env, spec) in launches.items():
                processes[name] = subprocess.Popen(
                    [PY, "-m", "bench.invoke", json.dumps({**spec, "serve": True})],
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            for name, process in processes.items():
                _read_row(name, process)  # ready
            order = list(processes)
            for k in range(per_round):
                for name in order if (r + k) % 2 == 0 else order[::-1]:
                    rows[name].append(_read_row(name, processes[name], "go\n"))
        finally:
            for process in processes.values():
                if process.stdin is not None:
                    process.stdin.close()
                process.wait(timeout=60)
    after = standin_stats(standin_base)
    expected = rounds * (WARMUP + per_round)
    posts_expected = expected * sum(spec["channel"] for _, _, spec in launches.values())
    expected *= len(launches)
    backend_calls, posts = after["backend"] - before["backend"], after["posts"] - before["posts"]
    if backend_calls != expected or posts != posts_expected:
        raise RuntimeError(f"{backend_calls} backend calls and {posts} posts for {expected} messages")
    return rows


def _read_row(name: str, process: subprocess.Popen[str], ask: str = "") -> dict[str, float]:
    """``ask`` written to the process, then its next line (a row, or ready)."""
    if process.stdin is None or process.stdout is None:
        raise RuntimeError("the handler process has no pipes")
    if ask:
        process.stdin.write(ask)
        process.stdin.flush()
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"the {name} handler process stopped (exit {process.wait(timeout=60)})")
    row: dict[str, float] = json.loads(line)
    return row


def summarize(rows: list[dict[str, float]], channel: int = CHANNEL) -> dict[str, Any]:
    def summary(values: list[float]) -> dict[str, float]:
        ms = [v * 1000 for v in values]
        return {"median_ms": statistics.median(ms), "p99_ms": _percentile(ms, 0.99)}

    overhead = [r["total"] - r["backend"] - r["management_api"] for r in rows]
    # What is left when DynamoDB's own time (moto's server, loopback) is also taken
    # out, but the client's work in this process (its CPU inside those calls) kept.
    own = [o - r["dynamodb"] + r["dynamodb_client_cpu"] for o, r in zip(overhead, rows, strict=True)]
    return {
        "messages": len(rows),
        "warmup": WARMUP,
        "channel": channel,
        "handler": summary([r["total"] for r in rows]),
        "backend": summary([r["backend"] for r in rows]),
        "management_api": summary([r["management_api"] for r in rows]),
        "dynamodb": summary([r["dynamodb"] for r in rows]),
        "overhead": summary(overhead),
        "dynamodb_client_cpu": summary([r["dynamodb_client_cpu"] for r in rows]),
        "overhead_without_dynamodb_server": summary(own),
        "cpu_per_message": summary([r["cpu"] for r in rows]),
        "dynamodb_calls": statistics.median([r.get("dynamodb_calls", 0.0) for r in rows]),
    }


def run(messages: int = MESSAGES, rounds: int = ROUNDS) -> dict[str, Any]:
    """This code and the baseline's, each round a fresh process of each, alternating.

    Both use the same stand-in and moto server; each process is a new container
    (``WARMUP`` messages first, not kept). Once for a channel of ``CHANNEL``, once for a
    booking of two (``PAIR``, under ``"pair"``).
    """
    four = run_channel(messages, rounds, CHANNEL)
    return {
        **four,
        "pair": run_channel(messages, rounds, PAIR),
        "user_level": run_user_level(messages, rounds),
    }


def run_user_level(messages: int, rounds: int) -> dict[str, Any]:
    """A booking of two on user-level sockets (each subscribed to the booking, each frame naming
    it) against the same booking on per-booking sockets: this code both times, alternating."""
    from bench.servers import ROOT

    use_dummy_aws_env()
    with standin(delay=0.0) as stand, moto_server() as moto:
        spec = {"overhead": True, "standin": stand.base, "moto": moto.base, "channel": PAIR}
        launches: dict[str, Launch] = {
            "user_level": (str(ROOT), None, {**spec, "user_level": True}),
            "per_booking": (str(ROOT), None, spec),
        }
        rows = alternate(launches, messages, rounds, stand.base, moto.base)
    return {name: summarize(found, PAIR) for name, found in rows.items()} | {"rounds": rounds}


def user_level_lines(res: dict[str, Any]) -> list[str]:
    """One socket per user against per-booking sockets, in a booking of two."""
    user, booking = res["user_level"], res["per_booking"]
    out = [
        (
            f"A booking of two on user-level sockets (subscribed; frames name the booking) against "
            f"per-booking sockets: {user['messages']:,} $default messages each, this code both "
            f"({res['rounds']} rounds, alternating)"
        ),
        f"  {'per message (median)':<54} {'user':>7} {'booking':>7} {'ratio':>7}",
    ]
    for name, key in (
        ("handler (app.message, whole), ms", "handler"),
        ("handler's own time, ms", "overhead_without_dynamodb_server"),
        ("process CPU per message, ms", "cpu_per_message"),
    ):
        this, that = user[key]["median_ms"], booking[key]["median_ms"]
        out.append(f"  {name:<54} {this:>7.2f} {that:>7.2f} {this / that:>6.2f}x")
    calls = f"{user['dynamodb_calls']:>7.0f} {booking['dynamodb_calls']:>7.0f}"
    out.append(f"  {'DynamoDB calls per message':<54} {calls}")
    return out


def user_level_targets(res: dict[str, Any]) -> list[Target]:
    user, booking = res["user_level"], res["per_booking"]
    cpu = user["cpu_per_message"]["median_ms"] / booking["cpu_per_message"]["median_ms"]
    extra = user["dynamodb_calls"] - booking["dynamodb_calls"]
    return [
        Target(
            "one socket per user: CPU per message <= 1.10x per-booking sockets'",
            cpu <= 1.10,
            f"{cpu:.2f}x ({user['cpu_per_message']['median_ms']:.2f} ms vs "
            f"{booking['cpu_per_message']['median_ms']:.2f} ms median, the same run)",
        ),
        Target(
            "one socket per user: at most one DynamoDB call more per message",
            extra <= 1,
            f"{user['dynamodb_calls']:.0f} calls vs {booking['dynamodb_calls']:.0f}",
        ),
    ]


def run_channel(messages: int, rounds: int, channel: int) -> dict[str, Any]:
    """``run`` for one channel size: this code and the baseline's, alternating (``alternate``)."""
    from bench.baseline import baseline_ref, extract
    from bench.servers import ROOT

    use_dummy_aws_env()
    with (
        standin(delay=0.0) as stand,
        moto_server() as moto,
        tempfile.TemporaryDirectory(prefix="bench-base-") as base,
    ):
        commit = extract(baseline_ref(), Path(base))
        spec = {"overhead": True, "standin": stand.base, "moto": moto.base, "channel": channel}
        launches: dict[str, Launch] = {
            "this": (str(ROOT), None, spec),
            "baseline": (base, {**os.environ, "PYTHONPATH": str(ROOT)}, spec),
        }
        rows = alternate(launches, messages, rounds, stand.base, moto.base)
    return {
        **summarize(rows["this"], channel),
        "rounds": rounds,
        "baseline": {"commit": commit, **summarize(rows["baseline"], channel)},
    }


def lines(res: dict[str, Any]) -> list[str]:
    def row(name: str, key: str, of: dict[str, Any] = res) -> str:
        return f"  {name:<54} {of[key]['median_ms']:>7.2f} {of[key]['p99_ms']:>7.2f}"

    out = [
        (
            f"Per-message overhead: {res['messages']:,} $default messages through app.message "
            f"(after {res['warmup']} warm-up), each a broadcast to a channel of {res['channel']}"
        ),
        f"  {'ms per message':<54} {'median':>7} {'p99':>7}",
        row("handler (app.message, whole)", "handler"),
        row("  in backend (BackendClient.post)", "backend"),
        row("  in Management API (gateway post/post_many)", "management_api"),
        row("  in DynamoDB calls (client + moto server, loopback)", "dynamodb"),
        row("    of which client CPU in this process (every thread)", "dynamodb_client_cpu"),
        row("overhead = handler - backend - Management API", "overhead"),
        row("overhead without moto's server time", "overhead_without_dynamodb_server"),
        row("process CPU per message (all threads)", "cpu_per_message"),
    ]
    base = res.get("baseline")
    if base:
        out += [
            (
                f"the same against {base['commit']} (the baseline code; {res['rounds']} rounds of a fresh "
                "warm process of each, messages alternating, same servers):"
            ),
            row("overhead", "overhead", base),
            row("overhead without moto's server time", "overhead_without_dynamodb_server", base),
            row("process CPU per message (all threads)", "cpu_per_message", base),
        ]
    pair = res.get("pair")
    if pair:
        out += pair_lines(pair)
    if "user_level" in res:
        out += user_level_lines(res["user_level"])
    return out


def ratio(res: dict[str, Any], key: str) -> float:
    """This code's median over the baseline's, for one line of the report."""
    return float(res[key]["median_ms"] / res["baseline"][key]["median_ms"])


def pair_lines(pair: dict[str, Any]) -> list[str]:
    """The booking of two: this code against the baseline, each line with its ratio."""
    base = pair["baseline"]
    out = [
        (
            f"A booking of two (the sender and one other, per-booking sockets): {pair['messages']:,} "
            f"$default messages each, this code against {base['commit']} "
            f"({pair['rounds']} rounds, alternating)"
        ),
        f"  {'ms per message (median)':<54} {'this':>7} {'base':>7} {'ratio':>7}",
    ]
    for name, key in (
        ("handler (app.message, whole)", "handler"),
        ("  in DynamoDB calls (client + moto server)", "dynamodb"),
        ("    of which client CPU (every thread)", "dynamodb_client_cpu"),
        ("handler's own time (without backend, Management API, moto)", "overhead_without_dynamodb_server"),
        ("process CPU per message (all threads)", "cpu_per_message"),
    ):
        this, that = pair[key]["median_ms"], base[key]["median_ms"]
        out.append(f"  {name:<54} {this:>7.2f} {that:>7.2f} {ratio(pair, key):>6.2f}x")
    return out


def pair_targets(pair: dict[str, Any]) -> list[Target]:
    commit = pair["baseline"]["commit"]
    own_key = "overhead_without_dynamodb_server"
    cpu, own = ratio(pair, "cpu_per_message"), ratio(pair, own_key)
    return [
        Target(
            f"a booking of two: CPU per message <= 0.5x {commit}'s",
            cpu <= 0.5,
            f"{cpu:.2f}x ({pair['cpu_per_message']['median_ms']:.2f} ms vs "
            f"{pair['baseline']['cpu_per_message']['median_ms']:.2f} ms median, the same run)",
        ),
        Target(
            f"a booking of two: the handler's own time <= 0.5x {commit}'s",
            own <= 0.5,
            f"{own:.2f}x ({pair[own_key]['median_ms']:.2f} ms vs "
            f"{pair['baseline'][own_key]['median_ms']:.2f} ms median, the same run)",
        ),
    ]


def targets(res: dict[str, Any]) -> list[Target]:
    median = res["overhead"]["median_ms"]
    own = res["overhead_without_dynamodb_server"]["median_ms"]
    baseline_own = (
        res["baseline"]["overhead_without_dynamodb_server"]["median_ms"] if "baseline" in res else 0.0
    )
    return [
        Target(
            "per-message overhead median <= 5 ms",
            median <= 5.0,
            f"{median:.2f} ms median, p99 {res['overhead']['p99_ms']:.2f} ms "
            f"(of which DynamoDB calls {res['dynamodb']['median_ms']:.2f} ms; "
            f"{own:.2f} ms without moto's server time)",
        ),
        Target(
            "  the same, without moto's server time (the client's CPU kept)",
            own <= 5.0,
            f"{own:.2f} ms median, p99 {res['overhead_without_dynamodb_server']['p99_ms']:.2f} ms",
        ),
        *(
            [
                Target(
                    f"  no regression against {res['baseline']['commit']}: within +10% without moto's time",
                    own <= 1.1 * baseline_own,
                    f"{own:.2f} ms vs {baseline_own:.2f} ms median, the same run",
                )
            ]
            if "baseline" in res
            else []
        ),
        *(pair_targets(res["pair"]) if "pair" in res else []),
        *(user_level_targets(res["user_level"]) if "user_level" in res else []),
    ]


NOTE = (
    "- **Per-message overhead**: measured for this code and, the same way, for the baseline's "
    "`app.py` and `chalicelib` (see Cold start) run from a `git archive` of it: 8 rounds, each a "
    "fresh warm process of each (20 messages of warm-up) against the same stand-in and moto server, "
    "their 150 messages alternating one by one (which goes first alternating too), so that a change "
    "in the shared machine's load falls on both alike; once for a channel of 4 and once for a "
    "booking of two (the sender and one other, each on a per-booking socket); then the same "
    "booking of two on user-level sockets (each its user's own, subscribed to the booking, every "
    "frame naming it) against per-booking sockets, this code both times, in the same way. "
    "`app.message(event, context)` (Chalice's handler with the Powertools "
    "middleware), dependencies built by `get_clients()` from the environment (the baseline's: its "
    "container of use cases): `BACKEND_URL` and "
    "`API_GATEWAY_ENDPOINT` point at the stand-in (answering at once), `AWS_ENDPOINT_URL_DYNAMODB` "
    "at a moto server in its own process. Handler logs go to /dev/null. Time inside "
    "`BackendClient.post`, the gateway's `post`/`post_many` and the registry's DynamoDB calls is "
    "measured by wrapping them; overhead = handler - backend - Management API, "
    "so it still holds the DynamoDB round trips to moto's server: the token's GetItem and the "
    "channel Query (the baseline: the channel Query), plus the "
    "GSI Query for a connection's first message in a container (the 20 warm-up messages cover the "
    "senders' first ones, so the measured messages are a warm container's); the "
    "line below it also takes out moto's server time (DynamoDB wall time minus the client's CPU in "
    "this process, every thread)."
)


if __name__ == "__main__":
    part_main(__name__)
