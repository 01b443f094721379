"""Server push to a large channel: chunked across asynchronous invocations vs one invocation.

A channel of N ``booking`` connections in moto (own process), a Management API
stand-in taking 20 ms per post (own process), and ``app.push`` run as Lambda
runs it. The asynchronous invocations of ``push`` that carry the other chunks
are emulated in this process: each runs in its own thread with a container of
its own (its own pool and fan-out threads), as each would be its own Lambda.
All of them share this machine's cores, where on AWS each chunk would have a
CPU of its own: so "all delivered" here is bounded by the CPU floor, and the
time one chunk takes on its own is what a push takes on Lambda (plus the
asynchronous invocation's start-up, not measured here).

Baseline: the same push with chunking off (one invocation posts to everyone).

"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from bench.part import Target, part_main
from bench.servers import moto_server, seed_channel, standin, use_dummy_aws_env

SIZES = (2_000, 10_000)
CHUNK = 500
WORKERS = 128
TABLE = "bench-push-connections"
PAYLOAD = {"type": "booking_status", "booking_id": "1", "status": "confirmed"}


class LambdaContext:
    function_name = "ws-proxy-bench-push"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ws-proxy-bench-push"
    log_group_name = "/aws/lambda/ws-proxy-bench-push"
    log_stream_name = "bench"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


class RecordingInvoker:
    """Keeps each asynchronous invocation (of ``fanout``) to run afterwards, one at a time."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def invoke_async(self, function_name: str, payload: Mapping[str, Any], deadline: Any = None) -> None:
        self.events.append(dict(payload))


def seed(client: Any, n: int) -> None:
    seed_channel(client, TABLE, "1", [f"c{i:06d}=" for i in range(n)], "booking")


def push_once(chunk_size: int) -> dict[str, Any]:
    """The coordinating invocation, then every chunk it handed off, each timed on its own."""
    from chalicelib.clients import build_clients
    from chalicelib.deadline import Deadline
    from chalicelib.fanout import FanOutChunkCase
    from chalicelib.push import PushCase

    os.environ["PUSH_CHUNK_SIZE"] = str(chunk_size)
    invoker = RecordingInvoker()
    # the app's clients, with the asynchronous invocations kept here instead of sent
    clients = dataclasses.replace(build_clients(), invoker=invoker)
    context = LambdaContext()
    started = time.perf_counter()
    answer = PushCase(clients).handle(
        {"channel": {"booking_id": "1"}, "payload": PAYLOAD},
        Deadline.from_context(context),
        context.function_name,
    )
    answered = time.perf_counter() - started
    chunk_times = []
    delivered, failed = answer.get("delivered", 0), answer.get("failed", 0)
    for event in invoker.events:
        began = time.perf_counter()
        result = FanOutChunkCase(clients).handle(event, Deadline.from_context(context), context.function_name)
        chunk_times.append(time.perf_counter() - began)
        delivered += result.get("delivered", 0)
        failed += result.get("failed", 0)
    return {
        "answered_s": round(answered, 3),
        "slowest_chunk_s": round(max(chunk_times, default=0.0), 3),
        "sequential_total_s": round(answered + sum(chunk_times), 3),
        "chunks": 1 + len(chunk_times),
        "delivered": delivered,
        "failed": failed,
        "answer": answer,
    }


def run(sizes: Sequence[int] = SIZES) -> dict[str, Any]:
    import boto3

    use_dummy_aws_env()
    results: dict[str, Any] = {"chunk_size": CHUNK, "post_ms": 20, "workers": WORKERS, "sizes": {}}
    with standin(0.02) as mgmt, moto_server() as moto:
        os.environ.update(
            {
                "AWS_ENDPOINT_URL_DYNAMODB": moto.base,
                "CONNECTIONS_TABLE": TABLE,
                "BACKEND_URL": mgmt.base,
                "API_GATEWAY_ENDPOINT": f"{mgmt.base}/bench",
                "PUSH_FUNCTION_NAME": LambdaContext.function_name,
                "FANOUT_WORKERS": str(WORKERS),
            }
        )
        from infra.table import ensure_table

        client = boto3.client("dynamodb", endpoint_url=moto.base)
        for n in sizes:
            with contextlib.suppress(client.exceptions.ResourceNotFoundException):
                client.delete_table(TableName=TABLE)
            ensure_table(client, TABLE)
            seed(client, n)
            posts_before = mgmt.stats()["posts"]
            chunked = push_once(CHUNK)
            unchunked = push_once(10**9)
            posts = mgmt.stats()["posts"] - posts_before
            results["sizes"][str(n)] = {
                "chunked": chunked,
                "unchunked": unchunked,
                "posts_seen_by_standin": posts,
            }
    return results


def lines(res: dict[str, Any]) -> list[str]:
    out = [
        (
            f"Push to one booking channel: {res['post_ms']} ms per post, FANOUT_WORKERS={res['workers']}, "
            f"PUSH_CHUNK_SIZE={res['chunk_size']}"
        ),
        "  (on Lambda the chunks run at once, each on its own CPU: a push takes about the larger of",
        "   the coordinator's answer and one chunk, plus an asynchronous invocation's start-up)",
    ]
    for n, r in res["sizes"].items():
        c, u = r["chunked"], r["unchunked"]
        lambda_time = max(c["answered_s"], c["slowest_chunk_s"])
        out.append(
            f"  N={int(n):,}: chunked: coordinator answered in {c['answered_s']:.2f} s (listed the channel, "
            f"posted its own {c['answer'].get('delivered', 0)}, handed off {c['chunks'] - 1} chunks); "
            f"slowest chunk {c['slowest_chunk_s']:.2f} s; {c['delivered']:,} delivered, {c['failed']} failed"
        )
        out.append(
            f"     unchunked baseline: one invocation, {u['delivered']:,} delivered in "
            f"{u['answered_s']:.2f} s; ratio {u['answered_s'] / max(lambda_time, 1e-9):.1f}x; "
            f"stand-in saw {r['posts_seen_by_standin']:,} posts for {2 * int(n):,} expected"
        )
    return out


def targets(res: dict[str, Any]) -> list[Target]:
    found = []
    for n, r in res["sizes"].items():
        c, u = r["chunked"], r["unchunked"]
        found.append(
            Target(
                f"push to {int(n):,}: every connection got it exactly once, chunked and not",
                c["delivered"] == u["delivered"] == int(n) and r["posts_seen_by_standin"] == 2 * int(n),
                f"{c['delivered']:,} and {u['delivered']:,} delivered, "
                f"{r['posts_seen_by_standin']:,} posts seen",
            )
        )
    return found


NOTE = (
    "- **Server push**: `app.push` against a channel of N `booking` items in moto (own process) and "
    "the 20 ms stand-in, PUSH_CHUNK_SIZE=500. The coordinating invocation is timed until it answers "
    "(it lists the channel, hands off the other chunks, posts its own); the handed-off chunk events "
    "are recorded and then run one at a time, each timed alone, because on Lambda they run at once "
    "on CPUs of their own, which one 2-core machine cannot show. Baseline: the same push with "
    "chunking off. The stand-in's post count checks that every connection got it exactly once."
)

if __name__ == "__main__":
    part_main(__name__)
