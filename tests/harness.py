"""What the tests share: bounded waits, loopback ports, moto, and the app on loopback stand-ins.

- ``wait_until`` / ``wait_for`` / ``poll``: poll a condition, bounded (threads / asyncio).
- ``refused_port``: a loopback port where connections are refused, held for the
  test so no other process can start listening there meanwhile.
- ``start_moto`` / ``moto_client`` / ``moto_registry_client``: an embedded DynamoDB
  (moto, on a port the kernel picks), a boto3 client for it and the proxy's own.
- ``Stack`` (built by ``open_stack``): the app driven as API Gateway drives it,
  with its backend, Management API and Lambda Invoke API as loopback stand-ins
  and DynamoDB on moto; ``chat_backend`` scripts the chat routes.

tests/conftest.py turns these into fixtures; tests import them from here.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from chalice.test import Client

import app as app_module
from chalicelib import aws
from chalicelib.gateway import RetryPolicy
from chalicelib.model import Connection
from chalicelib.routes import DEFAULT_ROUTES
from chalicelib.schema import create_table_request, to_item
from chalicelib.signing import Credentials
from chalicelib.transport import Transport
from local_gateway.stack import moto_server
from tests.standins import BackendStandIn, LambdaStandIn, ManagementApiStandIn, Reply
from ws_proxy_testing import events
from ws_proxy_testing.isolation import environment, reset_clients, use_environment

# -- waiting -------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true within {timeout} s")
        time.sleep(0.05)


async def poll(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` without blocking the event loop, for at most ``timeout`` seconds; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """``wait_until`` for a coroutine."""
    if not await poll(condition, timeout):
        raise AssertionError(f"{what}: not true within {timeout} s")


# -- ports and moto ------------------------------------------------------------------


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections for as long as the block runs.

    The socket is bound but never listens: connecting to it is refused, and no other
    process can take the port meanwhile (a port found free and closed again could be).
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@contextmanager
def start_moto() -> Iterator[str]:
    """An embedded moto server on a port the kernel picks; its URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request
    server = moto_server("127.0.0.1", 0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@functools.cache
def moto_client(endpoint: str) -> Any:
    """A DynamoDB client for a moto endpoint, with dummy credentials (one per endpoint, shared)."""
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@functools.cache
def moto_registry_client(endpoint: str) -> aws.DynamoDB:
    """The proxy's own DynamoDB client for a moto endpoint, with dummy credentials (shared)."""
    return aws.DynamoDB(
        endpoint, "us-east-1", lambda: Credentials("testing", "testing", None), Transport(4), max_attempts=10
    )


# -- the app on loopback stand-ins ------------------------------------------------------


def app_env(
    backend: BackendStandIn, mgmt: ManagementApiStandIn, lambdas: LambdaStandIn, moto: str, table: str
) -> dict[str, str]:
    """The app's environment with every neighbour a loopback stand-in (names as in docs/operations.md)."""
    return environment(
        backend_url=backend.url,
        api_gateway_endpoint=mgmt.endpoint,
        dynamodb_endpoint=moto,
        lambda_endpoint=lambdas.url,
        table=table,
        BACKEND_TIMEOUT_SECONDS="2",
    )


#: Index lookup retries with millisecond pauses (a miss on moto is final).
FAST_LOOKUP_RETRIES = (0.001, 0.001, 0.001, 0.001)
#: The timings the functional tests run the app with (documented settings): the same code
#: paths, shorter pauses. Connections here are "open" as soon as the stand-in says so: no
#: handshake grace (test_hardening.py tries the grace on its own). Deliver waits 0.35 s in
#: all for a handshake (0.05 + 0.1 + 0.2), not 5 s.
FAST_ENV = {
    "LOOKUP_RETRY_DELAYS": ",".join(map(str, FAST_LOOKUP_RETRIES)),
    "POST_RETRY_BASE_SECONDS": "0.001",
    "HANDSHAKE_GRACE_SECONDS": "0",
    "DELIVER_RETRY_SECONDS": "0.4",
}
#: The Management API's retries in Lambda (the number of attempts the tests count).
THROTTLE_ATTEMPTS = RetryPolicy().throttle_attempts


@dataclass
class Stack:
    """The app with every neighbour on loopback; helpers drive it like API Gateway."""

    client: Client
    backend: BackendStandIn
    mgmt: ManagementApiStandIn
    lambdas: LambdaStandIn
    dynamodb: Any
    table: str

    def connect(
        self,
        cid: str,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        *,
        establish: bool = True,
    ) -> dict[str, Any]:
        response: dict[str, Any] = self.invoke("connect", events.connect_event(cid, query, headers))
        if response["statusCode"] == 200 and establish:
            self.mgmt.open.add(cid)  # API Gateway completes the handshake
        return response

    def send(self, cid: str, body: Any, *, is_base64: bool = False) -> dict[str, Any]:
        event = events.message_event(cid, body, is_base64=is_base64)
        response: dict[str, Any] = self.invoke("message", event)
        return response

    def disconnect(self, cid: str) -> dict[str, Any]:
        self.mgmt.open.discard(cid)
        response: dict[str, Any] = self.invoke("disconnect", events.disconnect_event(cid))
        return response

    def invoke(self, name: str, event: Any, *, time_left_ms: float = 28_000) -> Any:
        """Run the function's handler as Lambda does, with ``time_left_ms`` before its deadline.

        (Chalice's test client would hand every handler Lambda's default 3 s.)
        """
        handler = app_module.app.handler_map[name]
        return handler(event, events.LambdaContext(name, time_left_ms=time_left_ms))

    def run_deliveries(self) -> list[Any]:
        """Run every deferred delivery the connect handler scheduled, in order."""
        return [self.invoke("deliver", payload) for payload in self.lambdas.take("-deliver")]

    def seed(
        self,
        cids: str | list[str],
        *,
        booking: str | None = "1",
        connection_type: str = "chat",
        user_id: str | None = None,
        token: str | None = "tok",
        ttl_seconds: int = 3600,
        open_: bool = True,
        channel: str | None = None,
    ) -> None:
        """Items for live connections exactly as ``$connect`` writes them (the registry's mapping)."""
        route = DEFAULT_ROUTES[connection_type]
        now = int(time.time())
        key = channel or route.channel_for(booking, user_id)
        ids = [cids] if isinstance(cids, str) else cids
        requests = [
            {
                "PutRequest": {
                    "Item": to_item(
                        Connection(
                            connection_id=cid,
                            channel=key,
                            connection_type=connection_type,
                            user_id=user_id,
                            token=token if route.needs_token else None,
                            created_at=now,
                            ttl=now + ttl_seconds,
                            booking_id=booking if route.needs_booking else None,
                            endpoint=self.mgmt.endpoint,
                        )
                    )
                }
            }
            for cid in ids
        ]
        for start in range(0, len(requests), 25):
            self.dynamodb.batch_write_item(RequestItems={self.table: requests[start : start + 25]})
        if open_:
            self.mgmt.open.update(ids)

    def items(self) -> list[dict[str, Any]]:
        # The tests may Scan; the proxy never does.
        result = self.dynamodb.scan(TableName=self.table, ConsistentRead=True)
        items: list[dict[str, Any]] = result["Items"]
        return items

    def live_ids(self) -> set[str]:
        return {item["connection_id"]["S"] for item in self.items()}


@contextmanager
def open_stack(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """Stand-ins started, the app's environment set, a fresh table; all undone afterwards."""
    backend = BackendStandIn().start()
    mgmt = ManagementApiStandIn(events.STAGE).start()
    lambdas = LambdaStandIn().start()
    table = f"connections-{uuid.uuid4().hex[:10]}"
    # One attempt per AWS call: a failing stand-in fails at once, without botocore's backoff
    # (test_config.py proves the retries and their pauses on their own).
    env = {
        **app_env(backend, mgmt, lambdas, moto_endpoint, table),
        "FANOUT_WORKERS": "8",
        "AWS_MAX_ATTEMPTS": "1",
        **FAST_ENV,
    }
    use_environment(monkeypatch, env)
    dynamodb = moto_client(moto_endpoint)
    # the table as chalicelib/schema.py defines it (moto's tables are ACTIVE at once; ensure_table,
    # which also waits and enables TTL, has its own test)
    dynamodb.create_table(**create_table_request(table))
    reset_clients()
    try:
        # stage "test" has no environment of its own in .chalice/config.json
        client = Client(app_module.app, stage_name="test")
        yield Stack(client, backend, mgmt, lambdas, dynamodb, table)
    finally:
        reset_clients()
        # each stop waits for its server's poll interval: all three at once
        stopping = [threading.Thread(target=server.stop) for server in (backend, mgmt, lambdas)]
        for thread in stopping:
            thread.start()
        dynamodb.delete_table(TableName=table)
        for thread in stopping:
            thread.join()


def chat_backend(backend: BackendStandIn, booking: str = "1", **connect_answer: Any) -> None:
    """Scripts the chat routes for ``booking``: connect accepts, messages broadcast."""
    answer = connect_answer or {
        "initial": {"type": "history", "thread": {"id": 7}, "messages": [{"id": 1, "body": "hi"}]},
        "receipt": {"type": "receipt", "last_read": 1},
    }
    backend.routes[f"/api/chat/ws/{booking}/connect"] = Reply(200, answer)
    backend.routes[f"/api/chat/ws/{booking}/message"] = lambda req: Reply(
        200,
        {
            "type": "message",
            "message": {"body": req["message"].get("body")},
            "thread": {"id": 7},
            "broadcast": True,
        },
    )
