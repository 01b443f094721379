"""Fan-out: one channel of N connections behind a Management API taking 20 ms per post.

Ours is ``chalicelib.gateway.ConnectionGateway.post_many`` built as
``chalicelib.clients`` builds it (over a ``Transport``,
``FANOUT_WORKERS`` posts in flight on the pool's event loop). The baseline is what the replaced
proxy did: a plain boto3 ``apigatewaymanagementapi`` client posting
sequentially. A second reference is that boto3 client in a thread pool of the
same width ("just add threads").

The stand-in (``bench.standin``) runs in its own process, so this process holds
only the clients under test; its CPU is read from /proc around every run, and a
no-op asyncio client measures how many posts per second it can answer at all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import boto3
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config

from bench.part import Target, part_main
from bench.servers import Server, standin, use_dummy_aws_env
from chalicelib import wire
from chalicelib.gateway import ConnectionGateway
from chalicelib.transport import Transport

DELAY = 0.02
WORKERS = 128
#: The "just add threads" reference: boto3 in a pool of this many threads (more was slower).
BOTO3_THREADS = 32
SIZES = (100, 1000, 5000)
#: The sequential baseline is measured whole up to this size; above it, on its first
#: ``SEQUENTIAL_SAMPLE`` posts, extrapolated linearly (1,000 posts take ~20 s).
SEQUENTIAL_WHOLE_UP_TO = 100
SEQUENTIAL_SAMPLE = 200
STAGE = "development"
PAYLOAD = wire.encode(
    {
        "type": "message",
        "message": {"id": 123, "body": "Hello, see you at 10", "sender": "user_42"},
        "thread": {"booking_id": "b-2025-0001", "unread": 1},
        "broadcast": True,
    }
)


@dataclass
class Run:
    """One client's fan-out to ``posts`` connections (``measured`` of them timed)."""

    client: str
    posts: int
    measured: int
    wall_s: float
    cpu_ms_per_post: float
    standin_cpu_share: float  # stand-in CPU seconds / wall seconds (1.0 = one core busy)
    extrapolated: bool = False


def connection_ids(n: int, prefix: str = "c") -> list[str]:
    """API Gateway-like connection ids (base64 with a trailing '=')."""
    return [f"{prefix}{i:011d}Q=" for i in range(n)]


def ours(endpoint: str, workers: int = WORKERS) -> tuple[ConnectionGateway, ThreadPoolExecutor]:
    """The gateway exactly as ``chalicelib.clients.build_clients`` builds it."""
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fanout")
    credentials = botocore.session.get_session().get_credentials()
    gateway = ConnectionGateway(
        endpoint,
        transport=Transport(workers),
        credentials=credentials.get_frozen_credentials,
        region="us-east-1",
        executor=executor,
    )
    return gateway, executor


def boto3_client(endpoint: str, pool_size: int | None = None) -> Any:
    config = Config(max_pool_connections=pool_size) if pool_size else None
    return boto3.client(
        "apigatewaymanagementapi", endpoint_url=endpoint, region_name="us-east-1", config=config
    )


def _measure(
    name: str, server: Server, posts: int, measured: int, action: Callable[[], int], extrapolate: bool = False
) -> Run:
    server_cpu = server.stats()["cpu"]
    cpu = time.process_time()
    started = time.perf_counter()
    delivered = action()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    server_cpu = server.stats()["cpu"] - server_cpu
    if delivered != measured:
        raise RuntimeError(f"{name}: {delivered} of {measured} posts delivered")
    scale = posts / measured
    return Run(
        client=name,
        posts=posts,
        measured=measured,
        wall_s=wall * scale,
        cpu_ms_per_post=cpu * 1000 / measured,
        standin_cpu_share=server_cpu / wall,
        extrapolated=extrapolate and scale != 1,
    )


def run_ours(gateway: ConnectionGateway, server: Server, ids: Sequence[str]) -> Run:
    gateway.post_many(connection_ids(2 * WORKERS, "warm"), PAYLOAD)  # a warm container's pool

    def action() -> int:
        return gateway.post_many(ids, PAYLOAD).delivered

    return _measure("ours", server, len(ids), len(ids), action)


def run_boto3_threaded(client: Any, executor: ThreadPoolExecutor, server: Server, ids: Sequence[str]) -> Run:
    def post(connection_id: str) -> int:
        client.post_to_connection(ConnectionId=connection_id, Data=PAYLOAD)
        return 1

    list(executor.map(post, connection_ids(2 * BOTO3_THREADS, "warm")))

    def action() -> int:
        return sum(executor.map(post, ids))

    return _measure(f"boto3, {BOTO3_THREADS} threads", server, len(ids), len(ids), action)


def run_boto3_sequential(client: Any, server: Server, ids: Sequence[str], sample: int) -> Run:
    for connection_id in connection_ids(4, "warm"):
        client.post_to_connection(ConnectionId=connection_id, Data=PAYLOAD)
    timed = ids[:sample]

    def action() -> int:
        for connection_id in timed:
            client.post_to_connection(ConnectionId=connection_id, Data=PAYLOAD)
        return len(timed)

    return _measure("boto3, sequential", server, len(ids), len(timed), action, extrapolate=True)


def cpu_breakdown(server: Server, posts: int = 2000) -> dict[str, Any]:
    """Client CPU per post, by design, against the stage that answers at once.

    Signing alone (botocore's ``AWSRequest`` + ``SigV4Auth`` and ours); the
    previous design (ours signed, posted one at a time through a urllib3 pool,
    with and without signing); ours whole, one post in flight and ``WORKERS``
    in flight; a boto3 ``post_to_connection``.
    """
    import urllib3

    endpoint = f"{server.base}/instant"
    gateway, executor = ours(endpoint)
    single, _ = ours(endpoint, workers=1)
    signer = gateway.signer(PAYLOAD)
    credentials = botocore.session.get_session().get_credentials().get_frozen_credentials()
    botocore_signer = SigV4Auth(credentials, "execute-api", "us-east-1")
    ids = connection_ids(posts, "p")
    paths = [gateway.path(i) for i in ids]
    urls = [server.base + path for path in paths]
    pool = urllib3.PoolManager(maxsize=4, retries=False)
    host_pool = pool.connection_from_url(endpoint)
    client = boto3_client(endpoint)

    def per_post(action: Callable[[int], Any]) -> float:
        for i in range(50):
            action(i)
        cpu = time.process_time()
        for i in range(posts):
            action(i)
        return (time.process_time() - cpu) * 1000 / posts

    def per_post_fan_out(target: ConnectionGateway) -> float:
        target.post_many(ids[:200], PAYLOAD)
        cpu = time.process_time()
        delivered = target.post_many(ids, PAYLOAD).delivered
        if delivered != posts:
            raise RuntimeError(f"{delivered} of {posts} delivered")
        return (time.process_time() - cpu) * 1000 / posts

    def sign_botocore(i: int) -> None:
        request = AWSRequest(method="POST", url=urls[i], data=PAYLOAD)
        request.headers["Content-Type"] = "application/json"
        botocore_signer.add_auth(request)

    headers = {"Content-Type": "application/json"}

    def urllib3_signed(i: int) -> None:
        host_pool.urlopen(
            "POST", paths[i], body=PAYLOAD, headers=signer.headers(paths[i]), retries=False, redirect=False
        )

    def urllib3_unsigned(i: int) -> None:
        host_pool.urlopen("POST", paths[i], body=PAYLOAD, headers=headers, retries=False, redirect=False)

    parts = {
        "sign, botocore (AWSRequest + SigV4Auth.add_auth)": per_post(sign_botocore),
        "sign, ours (Signer.headers)": per_post(lambda i: signer.headers(paths[i])),
        "previous: urllib3 pool, one at a time, unsigned": per_post(urllib3_unsigned),
        "previous: urllib3 pool, one at a time, signed": per_post(urllib3_signed),
        "ours: fan_out, 1 in flight": per_post_fan_out(single),
        f"ours: fan_out, {WORKERS} in flight": per_post_fan_out(gateway),
        "boto3 post_to_connection, one at a time": per_post(
            lambda i: client.post_to_connection(ConnectionId=ids[i], Data=PAYLOAD)
        ),
    }
    executor.shutdown()
    return {"posts": posts, "cpu_ms_per_post": parts, "tls": tls_cost(posts)}


def tls_cost(posts: int) -> dict[str, float]:
    """Ours over HTTPS: a cold pool's first fan-out (one TLS handshake per connection), then warm."""
    import ssl
    import tempfile

    from bench.servers import self_signed_certificate

    with tempfile.TemporaryDirectory(prefix="bench-tls-") as directory:
        certfile, keyfile = self_signed_certificate(directory)
        with standin(0.0, tls=(certfile, keyfile)) as server:
            transport = Transport(WORKERS, ssl_context=ssl.create_default_context(cafile=certfile))
            credentials = botocore.session.get_session().get_credentials()
            gateway = ConnectionGateway(
                f"{server.base}/instant",
                transport=transport,
                credentials=credentials.get_frozen_credentials,
                region="us-east-1",
            )
            gateway.post_many(connection_ids(8, "w"), PAYLOAD)  # the loop thread, not a TLS connection yet
            opened = server.stats()["connections"]
            cold_ids = connection_ids(WORKERS * 4, "cold")
            cpu = time.process_time()
            gateway.post_many(cold_ids, PAYLOAD)
            cold = time.process_time() - cpu
            handshakes = server.stats()["connections"] - opened - 1  # less the first stats call's own
            ids = connection_ids(posts, "tls")
            cpu = time.process_time()
            delivered = gateway.post_many(ids, PAYLOAD).delivered
            warm = (time.process_time() - cpu) * 1000 / posts
            if delivered != posts:
                raise RuntimeError(f"TLS: {delivered} of {posts} delivered")
            transport.close()
    return {
        "warm_ms_per_post": warm,
        "handshakes": handshakes,
        "handshake_ms": (cold * 1000 - len(cold_ids) * warm) / max(handshakes, 1),
    }


def run(sizes: Sequence[int] = SIZES, sample: int = SEQUENTIAL_SAMPLE) -> dict[str, Any]:
    """Every size, ours and both references, against one stand-in process."""
    use_dummy_aws_env()
    results: dict[str, Any] = {
        "delay_s": DELAY,
        "workers": WORKERS,
        "boto3_threads": BOTO3_THREADS,
        "cores": os.cpu_count(),
        "sizes": {},
    }
    with standin(DELAY) as server:
        endpoint = f"{server.base}/{STAGE}"
        gateway, executor = ours(endpoint)
        threaded = boto3_client(endpoint, pool_size=BOTO3_THREADS)
        sequential = boto3_client(endpoint)
        boto_executor = ThreadPoolExecutor(max_workers=BOTO3_THREADS, thread_name_prefix="boto3")
        try:
            for n in sizes:
                ids = connection_ids(n)
                runs = [
                    run_ours(gateway, server, ids),
                    run_boto3_threaded(threaded, boto_executor, server, ids),
                    run_boto3_sequential(
                        sequential, server, ids, n if n <= SEQUENTIAL_WHOLE_UP_TO else sample
                    ),
                ]
                results["sizes"][str(n)] = [asdict(r) for r in runs]
            results["cpu_breakdown"] = cpu_breakdown(server)
        finally:
            executor.shutdown()
            boto_executor.shutdown()
    return results


def floors(res: dict[str, Any], n: int, cpu_ms_per_post: float) -> tuple[float, float]:
    """(latency floor, CPU floor) in seconds for ``n`` posts on one event loop.

    Latency: ``ceil(N / in flight)`` rounds of one post's latency; CPU: N x CPU per
    post on one core. The larger of the two, plus the first wave's CPU (``min(N, in
    flight)`` posts are sent before any answer can come back), is the floor.
    """
    latency = -(-n // res["workers"]) * res["delay_s"]
    cpu = n * cpu_ms_per_post / 1000
    return latency, cpu


def floor(res: dict[str, Any], n: int, cpu_ms_per_post: float) -> float:
    return float(max(floors(res, n, cpu_ms_per_post)) + min(n, res["workers"]) * cpu_ms_per_post / 1000)


def lines(res: dict[str, Any]) -> list[str]:
    out = [
        (
            f"Fan-out (ConnectionGateway.post_many alone): stand-in answers each post after "
            f"{res['delay_s'] * 1000:.0f} ms; ours {res['workers']} in flight; {res['cores']} cores"
        ),
        (
            f"{'N':>6}  {'client':<20} {'wall s':>8} {'CPU ms/post':>12} {'ours faster':>12} "
            f"{'stand-in CPU':>13}"
        ),
    ]
    for n, runs in res["sizes"].items():
        first = runs[0]
        for r in runs:
            ratio = r["wall_s"] / first["wall_s"]
            note = f" (extrapolated from the first {r['measured']} posts)" if r["extrapolated"] else ""
            out.append(
                f"{int(n):>6}  {r['client']:<20} {r['wall_s']:>8.3f} {r['cpu_ms_per_post']:>12.3f} "
                f"{'' if r is first else f'{ratio:.1f}x':>12} {r['standin_cpu_share'] * 100:>12.0f}%{note}"
            )
        latency, cpu = floors(res, int(n), first["cpu_ms_per_post"])
        out.append(
            f"{'':>6}  floor: max(latency ceil(N / {res['workers']}) x {res['delay_s'] * 1000:.0f} ms "
            f"= {latency:.3f} s, CPU N x {first['cpu_ms_per_post']:.3f} ms = {cpu:.3f} s) + the first wave's "
            f"CPU = {floor(res, int(n), first['cpu_ms_per_post']):.3f} s; "
            f"ours / floor = {first['wall_s'] / floor(res, int(n), first['cpu_ms_per_post']):.2f}x"
        )
    share = max(runs[0]["standin_cpu_share"] for runs in res["sizes"].values())
    out.append(f"stand-in check: at most {share * 100:.0f}% of a core busy during ours (its own process)")
    b = res["cpu_breakdown"]
    out.append(f"CPU per post by design, stand-in answering at once ({b['posts']} posts each):")
    for name, ms in b["cpu_ms_per_post"].items():
        out.append(f"  {name:<50} {ms:.3f} ms")
    tls = b["tls"]
    label = f"ours over TLS, {res['workers']} in flight, warm"
    out.append(
        f"  {label:<50} "
        f"{tls['warm_ms_per_post']:.3f} ms; a cold pool's TLS handshakes: {tls['handshakes']} at "
        f"about {tls['handshake_ms']:.2f} ms of client CPU each"
    )
    return out


def targets(res: dict[str, Any]) -> list[Target]:
    sizes = res["sizes"]
    found = []
    if "1000" in sizes:
        runs = sizes["1000"]
        ratio = runs[2]["wall_s"] / runs[0]["wall_s"]
        found.append(
            Target(
                ">= 20x faster than sequential at 1,000",
                ratio >= 20,
                f"{ratio:.1f}x ({runs[0]['wall_s']:.3f} s vs {runs[2]['wall_s']:.2f} s, extrapolated)",
            )
        )
    worst_cpu = max(runs[0]["cpu_ms_per_post"] for runs in sizes.values())
    found.append(
        Target(
            "<= 1.0 ms CPU per post",
            worst_cpu <= 1.0,
            f"worst size {worst_cpu:.3f} ms/post ("
            + ", ".join(f"{int(n):,}: {runs[0]['cpu_ms_per_post']:.3f}" for n, runs in sizes.items())
            + ")",
        )
    )
    parts = []
    worst = 0.0
    for n, runs in sizes.items():
        ratio = runs[0]["wall_s"] / floor(res, int(n), runs[0]["cpu_ms_per_post"])
        worst = max(worst, ratio)
        parts.append(f"{int(n):,}: {ratio:.2f}x")
    found.append(Target("within 1.5x of the floor", worst <= 1.5, ", ".join(parts)))
    return found


def plot(res: dict[str, Any], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [int(n) for n in res["sizes"]]
    runs = list(res["sizes"].values())
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    labels = [
        f"ours (signed posts, {res['workers']} in flight on one event loop)",
        f"boto3 client, {res['boto3_threads']} threads",
        "boto3 client, sequential (replaced proxy)",
    ]
    for i, (label, color, marker) in enumerate(zip(labels, ("C0", "C1", "C3"), "os^", strict=True)):
        ax.plot(sizes, [r[i]["wall_s"] for r in runs], color=color, marker=marker, label=label)
        for x, r in zip(sizes, runs, strict=True):
            if r[i]["extrapolated"]:
                ax.plot([x], [r[i]["wall_s"]], marker=marker, color="white", markeredgecolor=color, ms=9)
    floor_s = [floor(res, n, r[0]["cpu_ms_per_post"]) for n, r in zip(sizes, runs, strict=True)]
    ax.plot(sizes, floor_s, color="grey", linestyle="--", label="floor (latency or CPU, + the first wave)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("connections in the channel")
    ax.set_ylabel("fan-out wall time (s)")
    ax.set_title("Fan-out, Management API at 20 ms per post (hollow: extrapolated)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


NOTE = (
    "- **Fan-out**: ours is `ConnectionGateway.post_many` built as `chalicelib/clients.py` builds it "
    "(over `Transport`, dummy credentials), FANOUT_WORKERS posts in flight. "
    "The baseline is a plain boto3 `apigatewaymanagementapi` client calling `post_to_connection` "
    "sequentially (the replaced proxy), measured whole at 100 and on its first 200 posts above, "
    "extrapolated linearly; the second reference is that client (pool of 32) in a 32-thread pool. "
    "The stand-in (`bench/standin.py`) is a bare asyncio HTTP/1.1 server in its own process "
    "(keep-alive, backlog 4096, 20 ms per post by a loop timer). Each client first posts to other ids "
    "(a warm container's connections), not counted. The floor: the larger of the latency rounds "
    "and the CPU on one core, plus the CPU of the first wave of posts (sent before any answer can "
    "come back). Wall time by `time.perf_counter`, CPU by "
    "`time.process_time()` of the measuring process (every thread)."
)

if __name__ == "__main__":
    part_main(__name__)
