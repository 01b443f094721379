"""``python -m bench.invoke '<json>'``: ``$default`` broadcasts through ``app.message``, timed.

With ``sweep`` in the argument instead: the gateway alone, ``posts`` posts to
``endpoint`` with each number of posts in flight (``bench.projection``); with
``overhead``: ``bench.overhead.serve`` (run from a baseline tree too: a warm handler serving one
``$default`` per stdin line, a JSON row back for each, as ``bench.overhead.alternate`` asks).

Used by ``bench.handler``, ``bench.projection`` and ``bench.overhead`` (not a part): it runs in
a process of its own, so that this process holds only the handler (and can be
put under a CPU cap), while the stand-in and moto run elsewhere. The JSON
argument names ``standin`` and ``moto`` (base URLs), ``table``, ``sizes``,
``repeats`` and ``workers``; each size N is a channel ``b-N`` of N chat
connections already in the table, and one message from its first connection
is a broadcast to all N. Prints one JSON line: per size, each invocation's
wall and CPU seconds (``time.process_time``: every thread of this process).
With ``serve``: after the warm-up, prints ``{"ready": true}`` and then runs one
message per channel size read from stdin, a JSON line back for each (so that
``bench.handler`` can alternate it with the Node baseline, both warm).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.servers import use_dummy_aws_env

WARM_CHANNEL = "b-warm"


class LambdaContext:
    function_name = "ws-proxy-bench-websocket_message"
    function_version = "$LATEST"
    memory_limit_in_mb = 1769
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ws-proxy-bench-websocket_message"
    log_group_name = "/aws/lambda/ws-proxy-bench-websocket_message"
    log_stream_name = "bench"

    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id

    def get_remaining_time_in_millis(self) -> int:
        return 28_000


def ids_for(channel: str, n: int) -> list[str]:
    """API Gateway-like connection ids of one channel."""
    return [f"{channel}-{i:08d}Q=" for i in range(n)]


def message_event(connection_id: str, i: int) -> dict[str, Any]:
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
        "body": json.dumps({"body": f"Hello #{i}", "client_id": f"k{i}"}),
        "isBase64Encoded": False,
    }


def invoke_all(spec: dict[str, Any]) -> dict[str, Any]:
    use_dummy_aws_env()
    os.environ.update(
        {
            "BACKEND_URL": spec["standin"],
            "API_GATEWAY_ENDPOINT": f"{spec['standin']}/development",
            "CONNECTIONS_TABLE": spec["table"],
            "AWS_ENDPOINT_URL_DYNAMODB": spec["moto"],
            "FANOUT_WORKERS": str(spec["workers"]),
            "PUSH_CHUNK_SIZE": "1000000",  # one invocation posts to all, as the Node sample does
            "POWERTOOLS_SERVICE_NAME": "ws-proxy",
        }
    )
    import app as app_module

    count = 0

    def message(channel: str) -> None:
        nonlocal count
        count += 1
        answer = app_module.message(message_event(ids_for(channel, 1)[0], count), LambdaContext(f"r{count}"))
        if answer.get("statusCode") != 200:
            raise RuntimeError(f"handler answered {answer}")

    message(WARM_CHANNEL)  # a warm container: clients built, connections open
    message(WARM_CHANNEL)
    if spec.get("serve"):
        return serve(message)
    results: dict[str, list[dict[str, float]]] = {}
    for n in spec["sizes"]:
        runs = []
        for _ in range(spec["repeats"]):
            runs.append(timed(message, f"b-{n}"))
        results[str(n)] = runs
    return {"runs": results, "messages": count}


def timed(message: Callable[[str], None], channel: str) -> dict[str, float]:
    cpu = time.process_time()
    started = time.perf_counter()
    message(channel)
    return {"wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu}


def serve(message: Callable[[str], None]) -> dict[str, Any]:
    """One message per channel size read from stdin, one JSON line back on the real stdout each."""
    out = os.fdopen(os.dup(_REAL_STDOUT), "w")
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        size = int(line.split()[0])  # "<size> [table]": the table is this process's own
        out.write(json.dumps({"size": size, **timed(message, f"b-{size}")}) + "\n")
        out.flush()
    out.close()
    return {"served": True}


def sweep(spec: dict[str, Any]) -> dict[str, Any]:
    """The gateway alone: ``posts`` posts with each number of posts in flight in ``sweep``."""
    from concurrent.futures import ThreadPoolExecutor

    from botocore.credentials import ReadOnlyCredentials

    from bench.fanout import PAYLOAD, connection_ids
    from chalicelib.gateway import ConnectionGateway
    from chalicelib.transport import Transport

    use_dummy_aws_env()
    posts = int(spec["posts"])
    out = {}
    for workers in spec["sweep"]:
        gateway = ConnectionGateway(
            spec["endpoint"],
            transport=Transport(workers),
            region="us-east-1",
            credentials=lambda: ReadOnlyCredentials("AKIDEXAMPLE", "secret", "token"),
            executor=ThreadPoolExecutor(2),
        )
        gateway.post_many(connection_ids(workers, "warm"), PAYLOAD)
        runs = []
        for _ in range(int(spec.get("repeats", 3))):
            cpu, started = time.process_time(), time.perf_counter()
            delivered = gateway.post_many(connection_ids(posts), PAYLOAD).delivered
            if delivered != posts:
                raise RuntimeError(f"{delivered} of {posts} delivered")
            runs.append((time.perf_counter() - started, (time.process_time() - cpu) * 1000 / posts))
        runs.sort()
        out[str(workers)] = {
            "wall_s": runs[len(runs) // 2][0],
            "cpu_s": runs[len(runs) // 2][1] * posts / 1000,
            "cpu_ms_per_post": runs[len(runs) // 2][1],
        }
        gateway.transport.close()
    return out


_REAL_STDOUT = 1


def main() -> None:
    global _REAL_STDOUT  # noqa: PLW0603 - the process's one real stdout, kept for the result line
    spec = json.loads(sys.argv[1])
    real = os.dup(1)
    _REAL_STDOUT = real
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the handler's logs and metrics, as Lambda writes them
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    if "overhead" in spec:
        from bench.overhead import serve as serve_overhead

        with os.fdopen(real, "w") as out:
            serve_overhead(
                spec["standin"],
                spec["moto"],
                int(spec.get("channel", 4)),
                out,
                user_level=bool(spec.get("user_level", False)),
            )
        return
    result = sweep(spec) if "sweep" in spec else invoke_all(spec)
    with os.fdopen(real, "w") as out:
        out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
