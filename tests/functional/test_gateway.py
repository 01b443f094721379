"""ConnectionGateway against a Management API stand-in: signing, retries, bounds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from botocore.credentials import ReadOnlyCredentials

from chalicelib.gateway import (
    ConnectionGateway,
    ManagementApi,
    PostOutcome,
    RetryPolicy,
    new_pool,
    region_for,
)
from tests.harness import refused_port
from tests.standins import ManagementApiStandIn


@pytest.fixture
def mgmt() -> Iterator[ManagementApiStandIn]:
    server = ManagementApiStandIn().start()
    yield server
    server.stop()


def make_gateway(endpoint: str, *, sleeps: list[float] | None = None, workers: int = 4) -> ConnectionGateway:
    from concurrent.futures import ThreadPoolExecutor

    api = ManagementApi(
        endpoint,
        pool=new_pool(workers, connect_timeout=0.5, read_timeout=1.0),
        credentials=lambda: ReadOnlyCredentials("AKIDEXAMPLE", "secret", "session-token"),
        region="eu-west-1",
        retry=RetryPolicy(throttle_attempts=4, transient_attempts=3, base_delay=0.001, max_delay=0.002),
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
    )
    return ConnectionGateway(api, ThreadPoolExecutor(workers), workers)


def test_posts_are_sigv4_signed_for_execute_api(mgmt: ManagementApiStandIn) -> None:
    mgmt.open.add("a/b+c=")
    gateway = make_gateway(mgmt.endpoint)
    assert gateway.post("a/b+c=", b'{"x":1}') is PostOutcome.DELIVERED
    assert mgmt.frames("a/b+c=") == [{"x": 1}]  # the id survives URL quoting
    (headers,) = mgmt.headers
    auth = headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in auth
    assert headers["X-Amz-Security-Token"] == "session-token"


def test_throttling_is_retried_a_bounded_number_of_times(mgmt: ManagementApiStandIn) -> None:
    sleeps: list[float] = []
    mgmt.open.add("T=")
    mgmt.throttle["T="] = 100
    gateway = make_gateway(mgmt.endpoint, sleeps=sleeps)
    assert gateway.post("T=", b"{}") is PostOutcome.FAILED
    assert mgmt.posts_to("T=") == 4
    assert len(sleeps) == 3


def test_server_errors_are_retried_then_failed(mgmt: ManagementApiStandIn) -> None:
    mgmt.open.add("S=")
    mgmt.fail.add("S=")
    assert make_gateway(mgmt.endpoint).post("S=", b"{}") is PostOutcome.FAILED
    assert mgmt.posts_to("S=") == 3


def test_unreachable_endpoint_fails_without_raising() -> None:
    with refused_port() as port:
        gateway = make_gateway(f"http://127.0.0.1:{port}/development")
        assert gateway.post("X=", b"{}") is PostOutcome.FAILED
        result = gateway.fan_out(["X=", "Y="], b"{}")
    assert result.failed == ["X=", "Y="]
    assert result.delivered == 0


def test_fan_out_sorts_outcomes_and_reports_gone_through_the_callback(mgmt: ManagementApiStandIn) -> None:
    mgmt.open.update({"A=", "B=", "L="})
    mgmt.max_post_bytes = 10_000
    removed: list[str] = []
    gateway = make_gateway(mgmt.endpoint)
    result = gateway.fan_out(["A=", "G=", "B="], b'{"m":1}', on_gone=removed.append)
    assert (result.delivered, result.gone, result.failed) == (2, ["G="], [])
    assert removed == ["G="]
    big = gateway.fan_out(["L="], b'{"p":"' + b"x" * 20_000 + b'"}')
    assert big.too_large == ["L="]


def test_cleanup_failure_does_not_stop_delivery(mgmt: ManagementApiStandIn) -> None:
    mgmt.open.update({"A=", "B="})

    def broken(cid: str) -> None:
        raise RuntimeError("dynamodb down")

    result = make_gateway(mgmt.endpoint).fan_out(["A=", "G1=", "G2=", "B="], b"{}", on_gone=broken)
    assert result.delivered == 2
    assert sorted(result.gone) == ["G1=", "G2="]


def test_region_comes_from_lambda_or_the_endpoint() -> None:
    assert region_for("https://abc.execute-api.ap-south-1.amazonaws.com/dev", {}) == "ap-south-1"
    assert region_for("https://chat.example.com/dev", {"AWS_REGION": "eu-central-1"}) == "eu-central-1"
    assert region_for("https://chat.example.com/dev", {}) == "us-east-1"
