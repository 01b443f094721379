"""Fan-out: one channel of N connections behind a Management API taking 20 ms per post.

Ours is ``chalicelib.gateway.ConnectionGateway.fan_out`` built as
``chalicelib.container`` builds it (``ManagementApi`` over ``new_pool`` and a
``ThreadPoolExecutor`` of ``FANOUT_WORKERS``). The baseline is what the replaced
proxy did: a plain boto3 ``apigatewaymanagementapi`` client posting
sequentially. A second reference is that boto3 client in a thread pool of the
same width ("just add threads").

The stand-in (``bench.standin``) runs in its own process, so this process holds
only the clients under test; its CPU is read from /proc around every run, and a
no-op asyncio client measures how many posts per second it can answer at all.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
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

from bench.servers import Server, standin, use_dummy_aws_env
from chalicelib import protocol
from chalicelib.gateway import ConnectionGateway, ManagementApi, new_pool

DELAY = 0.02
WORKERS = 32
SIZES = (100, 1000, 5000)
#: The sequential baseline is measured whole up to this size; above it, on its first
#: ``SEQUENTIAL_SAMPLE`` posts, extrapolated linearly (5,000 posts would take ~110 s).
SEQUENTIAL_WHOLE_UP_TO = 1000
SEQUENTIAL_SAMPLE = 200
STAGE = "development"
PAYLOAD = protocol.encode(
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
    """The gateway exactly as ``chalicelib.container.Container`` builds it."""
    pool = new_pool(workers)
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fanout")
    credentials = botocore.session.get_session().get_credentials()
    api = ManagementApi(
        endpoint, pool=pool, credentials=credentials.get_frozen_credentials, region="us-east-1"
    )
    return ConnectionGateway(api, executor, workers), executor


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
    gateway.fan_out(connection_ids(2 * WORKERS, "warm"), PAYLOAD)  # a warm container's pool

    def action() -> int:
        return gateway.fan_out(ids, PAYLOAD).delivered

    return _measure("ours", server, len(ids), len(ids), action)


def run_boto3_threaded(client: Any, executor: ThreadPoolExecutor, server: Server, ids: Sequence[str]) -> Run:
    def post(connection_id: str) -> int:
        client.post_to_connection(ConnectionId=connection_id, Data=PAYLOAD)
        return 1

    list(executor.map(post, connection_ids(2 * WORKERS, "warm")))

    def action() -> int:
        return sum(executor.map(post, ids))

    return _measure(f"boto3, {WORKERS} threads", server, len(ids), len(ids), action)


def run_boto3_sequential(client: Any, server: Server, ids: Sequence[str], sample: int) -> Run:
    for connection_id in connection_ids(4, "warm"):
        client.post_to_connection(ConnectionId=connection_id, Data=PAYLOAD)
    timed = ids[:sample]

    def action() -> int:
        for connection_id in timed:
            client.post_to_connection(ConnectionId=connection_id, Data=PAYLOAD)
        return len(timed)

    return _measure("boto3, sequential", server, len(ids), len(timed), action, extrapolate=True)


async def _noop_client(base: str, posts: int, concurrency: int) -> float:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = iter(range(posts))

        async def worker() -> None:
            for i in queue:
                async with session.post(f"{base}/{STAGE}/@connections/probe{i}Q=", data=PAYLOAD) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"stand-in answered {r.status}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return posts / (time.perf_counter() - started)


def standin_capacity(server: Server, posts: int = 4000, concurrency: int = 256) -> dict[str, float]:
    """Posts/s the stand-in answers to a client that does nothing else (unsigned aiohttp)."""
    cpu = server.stats()["cpu"]
    started = time.perf_counter()
    rate = asyncio.run(_noop_client(server.base, posts, concurrency))
    wall = time.perf_counter() - started
    return {
        "posts": posts,
        "concurrency": concurrency,
        "posts_per_s": rate,
        "standin_cpu_share": (server.stats()["cpu"] - cpu) / wall,
        "latency_bound_posts_per_s": concurrency / DELAY,
    }


def cpu_breakdown(server: Server, posts: int = 2000) -> dict[str, Any]:
    """Client CPU per post, split into its parts, against the stage that answers at once.

    Single-threaded, no profiler: signing with botocore (``AWSRequest`` +
    ``SigV4Auth``) and with ours (``Signer.headers``), the same post unsigned
    through the urllib3 pool, ours whole (``ManagementApi.post``), and a boto3
    ``post_to_connection``. Then a cProfile run of ours names the functions that
    cost the most.
    """
    endpoint = f"{server.base}/instant"
    gateway, executor = ours(endpoint)
    executor.shutdown()
    api = gateway.api
    signer = api.signer(PAYLOAD)
    botocore_signer = SigV4Auth(api._credentials(), "execute-api", "us-east-1")
    ids = connection_ids(posts, "p")
    urls = [api.url(i) for i in ids]
    pool = new_pool(WORKERS)
    client = boto3_client(endpoint)

    def per_post(action: Callable[[int], Any]) -> float:
        for i in range(50):
            action(i)
        cpu = time.process_time()
        for i in range(posts):
            action(i)
        return (time.process_time() - cpu) * 1000 / posts

    def sign_botocore(i: int) -> None:
        request = AWSRequest(method="POST", url=urls[i], data=PAYLOAD)
        request.headers["Content-Type"] = "application/json"
        botocore_signer.add_auth(request)

    paths = [api.path(i) for i in ids]

    def sign_ours(i: int) -> None:
        signer.headers(paths[i])

    headers = {"Content-Type": "application/json"}

    def unsigned(i: int) -> None:
        pool.urlopen("POST", urls[i], body=PAYLOAD, headers=headers, retries=False, redirect=False)

    parts = {
        "sign, botocore (AWSRequest + SigV4Auth.add_auth)": per_post(sign_botocore),
        "sign, ours (Signer.headers)": per_post(sign_ours),
        "post unsigned (urllib3 pool)": per_post(unsigned),
        "ours whole (ManagementApi.post)": per_post(lambda i: api.post(ids[i], PAYLOAD, signer)),
        "boto3 post_to_connection": per_post(
            lambda i: client.post_to_connection(ConnectionId=ids[i], Data=PAYLOAD)
        ),
    }
    profiler = cProfile.Profile(time.process_time)  # CPU, not time spent waiting on sockets
    profiler.enable()
    for i in range(posts):
        api.post(ids[i], PAYLOAD, signer)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = []
    for (path, line, func), (_cc, _nc, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((cumtime, tottime, f"{_short(path)}:{line}({func})"))
    rows.sort(reverse=True)
    by_tottime = sorted(rows, key=lambda r: r[1], reverse=True)
    return {
        "posts": posts,
        "cpu_ms_per_post": parts,
        "profile_total_ms_per_post": total * 1000 / posts,
        "profile_top_cumulative": [(name, cum * 1000 / posts) for cum, _t, name in rows[:25]],
        "profile_top_self": [(name, t * 1000 / posts) for _c, t, name in by_tottime[:15]],
    }


def _short(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return os.path.basename(path)


def run(sizes: Sequence[int] = SIZES, sample: int = SEQUENTIAL_SAMPLE) -> dict[str, Any]:
    """Every size, ours and both references, against one stand-in process."""
    use_dummy_aws_env()
    results: dict[str, Any] = {"delay_s": DELAY, "workers": WORKERS, "cores": os.cpu_count(), "sizes": {}}
    with standin(DELAY) as server:
        endpoint = f"{server.base}/{STAGE}"
        results["standin_capacity"] = standin_capacity(server)
        gateway, executor = ours(endpoint)
        threaded = boto3_client(endpoint, pool_size=WORKERS)
        sequential = boto3_client(endpoint)
        boto_executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="boto3")
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
                results["sizes"][n] = [asdict(r) for r in runs]
            results["cpu_breakdown"] = cpu_breakdown(server)
        finally:
            executor.shutdown()
            boto_executor.shutdown()
    return results
