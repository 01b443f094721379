"""The signer decision: our hand-written SigV4 against botocore's ``SigV4Auth``, same transport.

Both sign every post of a fan-out and send it through the same
``ConnectionGateway``/``Transport`` (post by path on keep-alive connections, one
event loop, ``WORKERS`` in flight) to the same stand-in (20 ms per post); only
``ConnectionGateway.signer`` differs: ours (``chalicelib.signing.Signer``, the key
derived once per day, the payload hashed once per fan-out) or botocore's
(``AWSRequest`` + ``SigV4Auth.add_auth`` per post, as boto3 signs). Runs
alternate between the two, ``REPEATS`` of each per size; medians. The rule:
keep the hand-written signer only if it saves more than 10% of fan-out wall
time or of CPU per post.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from bench.part import Target, part_main
from bench.servers import standin, use_dummy_aws_env
from chalicelib.gateway import ConnectionGateway
from chalicelib.signing import Signer
from chalicelib.transport import Transport

DELAY = 0.02
SIZES = (500, 1000)
REPEATS = 5
WORKERS = 128
PAYLOAD = b'{"type":"message","message":{"id":123,"body":"Hello, see you at 10","sender":"user_42"}}'
CREDENTIALS = ReadOnlyCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token")
THRESHOLD = 0.10


class BotocoreSigner(Signer):
    """botocore's SigV4Auth on an AWSRequest per post: what signing with botocore costs."""

    def __init__(self, origin: str, credentials: ReadOnlyCredentials, region: str, data: bytes) -> None:
        self._auth = SigV4Auth(credentials, "execute-api", region)
        self._origin = origin
        self._data = data

    def headers(self, path: str, amz_date: str | None = None) -> dict[str, str]:
        request = AWSRequest(method="POST", url=self._origin + path, data=self._data)
        request.headers["Content-Type"] = "application/json"
        self._auth.add_auth(request)
        return {
            name: request.headers[name]
            for name in ("Content-Type", "X-Amz-Date", "X-Amz-Security-Token", "Authorization")
            if name in request.headers
        }


class BotocoreSignedGateway(ConnectionGateway):
    """The same gateway, each post signed by botocore."""

    def __init__(self, endpoint: str, **options: Any) -> None:
        super().__init__(endpoint, **options)
        parts = urlsplit(endpoint)
        self.origin = f"{parts.scheme}://{parts.netloc}"

    def signer(self, data: bytes) -> Signer:
        return BotocoreSigner(self.origin, CREDENTIALS, "us-east-1", data)


def gateways(endpoint: str) -> dict[str, ConnectionGateway]:
    transport = Transport(WORKERS)
    executor = ThreadPoolExecutor(2)
    made = {}
    for name, kind in (("hand-written", ConnectionGateway), ("botocore SigV4Auth", BotocoreSignedGateway)):
        made[name] = kind(
            endpoint,
            transport=transport,
            credentials=lambda: CREDENTIALS,
            region="us-east-1",
            executor=executor,
        )
    return made


def sign_cost(gateway: ConnectionGateway, posts: int = 3000) -> float:
    """CPU ms per signature alone, one thread."""
    signer = gateway.signer(PAYLOAD)
    paths = [gateway.path(f"s{i:011d}Q=") for i in range(posts)]
    cpu = time.process_time()
    for path in paths:
        signer.headers(path)
    return (time.process_time() - cpu) * 1000 / posts


def run() -> dict[str, Any]:
    use_dummy_aws_env()
    results: dict[str, Any] = {"workers": WORKERS, "delay_s": DELAY, "repeats": REPEATS, "sizes": {}}
    with standin(DELAY) as server:
        made = gateways(f"{server.base}/development")
        for gateway in made.values():
            gateway.post_many([f"warm{i:08d}Q=" for i in range(WORKERS)], PAYLOAD)
        for n in SIZES:
            ids = [f"c{i:011d}Q=" for i in range(n)]
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in made}
            for _ in range(REPEATS):
                for name, gateway in made.items():
                    cpu = time.process_time()
                    started = time.perf_counter()
                    delivered = gateway.post_many(ids, PAYLOAD).delivered
                    wall = time.perf_counter() - started
                    if delivered != n:
                        raise RuntimeError(f"{name}: {delivered} of {n} delivered")
                    runs[name].append((wall, (time.process_time() - cpu) * 1000 / n))
            results["sizes"][str(n)] = {
                name: {
                    "wall_s": statistics.median(w for w, _ in values),
                    "cpu_ms_per_post": statistics.median(c for _, c in values),
                }
                for name, values in runs.items()
            }
        results["sign_only_ms"] = {name: sign_cost(gateway) for name, gateway in made.items()}
    return results


def _savings(res: dict[str, Any]) -> dict[str, dict[str, float]]:
    out = {}
    for n, row in res["sizes"].items():
        ours, boto = row["hand-written"], row["botocore SigV4Auth"]
        out[n] = {
            "wall": 1 - ours["wall_s"] / boto["wall_s"],
            "cpu": 1 - ours["cpu_ms_per_post"] / boto["cpu_ms_per_post"],
        }
    return out


def decision(res: dict[str, Any]) -> tuple[bool, str]:
    savings = _savings(res)
    best = max(max(s["wall"], s["cpu"]) for s in savings.values())
    keep = all(max(s["wall"], s["cpu"]) > THRESHOLD for s in savings.values())
    return keep, f"largest saving {best * 100:.0f}%"


def lines(res: dict[str, Any]) -> list[str]:
    out = [
        (
            f"Signer: hand-written vs botocore SigV4Auth on the same transport ({res['workers']} in flight, "
            f"stand-in {res['delay_s'] * 1000:.0f} ms per post), median of {res['repeats']} alternating runs"
        ),
        f"{'N':>6}  {'signer':<20} {'wall s':>8} {'CPU ms/post':>12}",
    ]
    savings = _savings(res)
    for n, row in res["sizes"].items():
        for name, r in row.items():
            out.append(f"{int(n):>6}  {name:<20} {r['wall_s']:>8.3f} {r['cpu_ms_per_post']:>12.3f}")
        s = savings[n]
        out.append(
            f"{'':>6}  hand-written saves {s['wall'] * 100:.0f}% of wall time, {s['cpu'] * 100:.0f}% of CPU"
        )
    sign = res["sign_only_ms"]
    out.append("signing alone, one thread: " + ", ".join(f"{name} {ms:.4f} ms" for name, ms in sign.items()))
    keep, why = decision(res)
    out.append(
        f"decision: {'keep the hand-written signer' if keep else 'sign with botocore'} "
        f"(rule: keep it only if it saves > {THRESHOLD * 100:.0f}% of wall or CPU at every size; {why})"
    )
    return out


def targets(res: dict[str, Any]) -> list[Target]:
    keep, _why = decision(res)
    return [
        Target(
            "hand-written signer buys > 10% of fan-out wall time or CPU per post at N=500 and 1,000",
            keep,
            ", ".join(
                f"{int(n):,}: wall {s['wall'] * 100:.0f}%, CPU {s['cpu'] * 100:.0f}%"
                for n, s in _savings(res).items()
            ),
        )
    ]


NOTE = "- **Signer**: " + " ".join((__doc__ or "").split("\n\n")[1].split())

if __name__ == "__main__":
    part_main(__name__)
