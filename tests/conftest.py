"""Fixtures: moto DynamoDB, loopback stand-ins, and the app driven through Chalice's test client."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from chalice.test import Client
from moto.server import ThreadedMotoServer

import app as app_module
from chalicelib.container import Tuning
from chalicelib.registry import Connection, item_for
from chalicelib.routes import DEFAULT_ROUTES
from chalicelib.schema import ensure_table
from tests import events
from tests.standins import BackendStandIn, LambdaStandIn, ManagementApiStandIn

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def moto_client(endpoint: str) -> Any:
    """A DynamoDB client for the moto server, with dummy credentials."""
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def app_env(
    backend: BackendStandIn, mgmt: ManagementApiStandIn, lambdas: LambdaStandIn, moto: str, table: str
) -> dict[str, str]:
    """The app's environment with every neighbour a loopback stand-in (names as in docs/operations.md)."""
    return {
        "BACKEND_URL": backend.url,
        "CONNECTIONS_TABLE": table,
        "API_GATEWAY_ENDPOINT": mgmt.endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB": moto,
        "AWS_ENDPOINT_URL_LAMBDA": lambdas.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "DELIVER_FUNCTION_NAME": "ws-proxy-test-deliver",
        "FANOUT_FUNCTION_NAME": "ws-proxy-test-fanout",
        "BACKEND_TIMEOUT_SECONDS": "2",
    }


#: Variables a developer's shell might set that would change what the tests mean.
UNSET_ENV = (
    "AWS_PROFILE",
    "ALLOWED_ORIGINS",
    "PUSH_CHUNK_SIZE",
    "BACKEND_ROUTES",
    "CONNECTION_TTL_SECONDS",
    "AWS_SESSION_TOKEN",
)


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
        response = self.invoke("connect", events.connect_event(cid, query, headers))
        if response["statusCode"] == 200 and establish:
            self.mgmt.open.add(cid)  # API Gateway completes the handshake
        return response

    def send(self, cid: str, body: Any, *, is_base64: bool = False) -> dict[str, Any]:
        return self.invoke("message", events.message_event(cid, body, is_base64=is_base64))

    def disconnect(self, cid: str) -> dict[str, Any]:
        self.mgmt.open.discard(cid)
        return self.invoke("disconnect", events.disconnect_event(cid))

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
                    "Item": item_for(
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
        return result["Items"]

    def live_ids(self) -> set[str]:
        return {item["connection_id"]["S"] for item in self.items()}


def chat_backend(backend: BackendStandIn, booking: str = "1", **connect_answer: Any) -> None:
    """Scripts the chat routes for ``booking``: connect accepts, messages broadcast."""
    from tests.standins import Reply

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


#: Index lookup retries without real pauses (a miss on moto is final).
FAST_LOOKUP_RETRIES = (0.001, 0.001, 0.001, 0.001)
TEST_TUNING = Tuning(lookup_retry_delays=FAST_LOOKUP_RETRIES, handshake_grace_seconds=0)


@pytest.fixture
def stack(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    backend = BackendStandIn().start()
    mgmt = ManagementApiStandIn(events.STAGE).start()
    lambdas = LambdaStandIn().start()
    table = f"connections-{uuid.uuid4().hex[:10]}"
    env = {**app_env(backend, mgmt, lambdas, moto_endpoint, table), "FANOUT_WORKERS": "8"}
    for key in UNSET_ENV:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    dynamodb = moto_client(moto_endpoint)
    ensure_table(dynamodb, table)
    # The index is strongly consistent on moto: a miss is final, so its retries need no real pauses.
    # Connections here are "open" as soon as the stand-in says so: no handshake grace
    # (test_hardening.py tries the grace on its own).
    app_module.container.reset(TEST_TUNING)
    try:
        # stage "test" has no environment of its own in .chalice/config.json
        yield Stack(Client(app_module.app, stage_name="test"), backend, mgmt, lambdas, dynamodb, table)
    finally:
        app_module.container.reset(Tuning())
        for server in (backend, mgmt, lambdas):
            server.stop()
        dynamodb.delete_table(TableName=table)


def frames_of(stack: Stack, cid: str) -> list[Any]:
    return stack.mgmt.frames(cid)


def dumps(obj: Any) -> str:
    return json.dumps(obj)


@pytest.fixture
def dynamodb_ops(stack: Stack) -> list[str]:
    """Every DynamoDB operation the app's clients make (registered before they exist)."""
    calls: list[str] = []
    session = boto3.DEFAULT_SESSION or boto3.setup_default_session() or boto3.DEFAULT_SESSION
    assert session is not None

    def record(model: Any, **kwargs: Any) -> None:
        calls.append(model.name)

    session.events.register("before-call.dynamodb", record)
    app_module.container.reset()
    yield calls
    session.events.unregister("before-call.dynamodb", record)
