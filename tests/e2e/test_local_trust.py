"""No web page can drive the local stack: forged ``Host`` and ``Origin`` headers, over real sockets.

A browser on this machine runs any page's script, and that script can reach
loopback. Every server of the stack (gateway, reference backend, embedded
DynamoDB) refuses a ``Host`` that is not its own (DNS rebinding); the Lambda
Invoke and Management APIs refuse another page's ``Origin`` before anything
runs (a text/plain "simple" POST needs no preflight); the embedded DynamoDB
answers no other origin, preflight included. Pages on loopback may load the
client module and get development tokens (CORS), and nothing else.
"""

from __future__ import annotations

import http.client
import json
import re
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from local_gateway.trust import Trust
from tests.e2e.support import Socket, StackProcess, join_chat, new_booking, open_socket, run, token

pytestmark = pytest.mark.e2e

EVIL = "http://evil.example"
#: A page on loopback, on a port the stack does not serve.
OTHER_LOOPBACK_PAGE = "http://127.0.0.1:9"
LIST_TABLES = {
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "DynamoDB_20120810.ListTables",
    # moto picks the service from the credential scope; the signature is not checked.
    "Authorization": "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=host, Signature=0",
}
SCAN_HEADERS = {**LIST_TABLES, "X-Amz-Target": "DynamoDB_20120810.Scan"}


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.text = body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.text)


def send(
    base: str, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> Answer:
    """One request to ``base`` with exactly these headers (a ``Host`` given here replaces the real one)."""
    address = urlsplit(base)
    assert address.hostname is not None
    assert address.port is not None
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=15)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def port(url: str) -> int:
    value = urlsplit(url).port
    assert value is not None
    return value


def requests(stack: StackProcess) -> dict[str, tuple[str, str, str, dict[str, str], bytes]]:
    """A request that each server answers 200 when it trusts it."""
    dev_token = json.dumps({"user_id": "alice"}).encode()
    return {
        "gateway": (stack.gateway, "GET", "/demo/config", {}, b""),
        "backend": (stack.backend, "POST", "/dev/token", {"Content-Type": "application/json"}, dev_token),
        "dynamodb": (stack.endpoints["dynamodb"], "POST", "/", LIST_TABLES, b"{}"),
    }


# -- Host ----------------------------------------------------------------------------


FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:{port}",
    "127.0.0.1.nip.io:{port}",
    "localhost.evil.example:{port}",
    "127.0.0.1@evil.example",
    "",
]


@pytest.mark.parametrize("server", ["gateway", "backend", "dynamodb"])
@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_every_server_refuses_a_host_that_is_not_loopback(
    local_stack: StackProcess, server: str, host: str
) -> None:
    base, method, path, headers, body = requests(local_stack)[server]
    forged = host.format(port=port(base))
    answer = send(base, method, path, {**headers, "Host": forged}, body)
    assert answer.status == 403, (answer.status, answer.text)
    assert "DNS rebinding" in answer.text
    if server == "gateway":  # the terminal says so too
        local_stack.wait_for_log(rf"refused +GET /demo/config: Host {re.escape(repr(forged))} is refused")
    assert '"token"' not in answer.text  # no development token was issued
    assert "TableNames" not in answer.text


@pytest.mark.parametrize("server", ["gateway", "backend", "dynamodb"])
@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "127.0.0.2:{port}"])
def test_every_server_answers_its_loopback_names(local_stack: StackProcess, server: str, host: str) -> None:
    base, method, path, headers, body = requests(local_stack)[server]
    answer = send(base, method, path, {**headers, "Host": host.format(port=port(base))}, body)
    assert answer.status == 200, (answer.status, answer.text)


def test_a_websocket_with_a_foreign_host_is_refused_and_one_from_another_loopback_page_reaches_connect(
    local_stack: StackProcess,
) -> None:
    booking = new_booking()
    url = local_stack.ws_url(type="chat", booking_id=booking, token=token(local_stack, "alice"))

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url, headers={"Host": f"evil.example:{port(local_stack.gateway)}"})
            assert refused.value.status == 403
            # Another page's Origin is for the app to judge (ALLOWED_ORIGINS), as in AWS: unset here.
            ws = await session.ws_connect(url, origin=OTHER_LOOPBACK_PAGE)
            sock = Socket(ws)
            assert (await sock.recv())["type"] == "history"
            await sock.close()

    run(scenario)


# -- Origin on the Lambda Invoke and Management APIs ------------------------------------


def invoke(stack: StackProcess, name: str, event: dict[str, Any], headers: dict[str, str]) -> Answer:
    path = f"/2015-03-31/functions/ws-proxy-local-{name}/invocations"
    return send(stack.gateway, "POST", path, headers, json.dumps(event).encode())


async def quiet_feed(session: aiohttp.ClientSession, stack: StackProcess) -> Socket:
    """A feed socket past whatever it is sent on connect (a ping's pong comes last)."""
    sock = await open_socket(session, stack.ws_url(type="feed"))
    await sock.send({"type": "ping"})
    await sock.recv_until("pong")
    return sock


FEED_PUSH = {"channel": {"feed": True}, "connection_type": "feed", "payload": {"type": "feed_item", "x": 1}}


@pytest.mark.parametrize("name", ["push", "fanout", "deliver"])
@pytest.mark.parametrize("origin", [EVIL, OTHER_LOOPBACK_PAGE, "null"])
def test_a_cross_site_simple_post_invokes_no_function(
    local_stack: StackProcess, name: str, origin: str
) -> None:
    answer = invoke(local_stack, name, FEED_PUSH, {"Content-Type": "text/plain", "Origin": origin})
    assert answer.status == 403, (answer.status, answer.text)
    assert answer.headers["x-amzn-errortype"] == "ForbiddenException"
    assert answer.json()["message"].startswith(f"Origin {origin!r} is refused")
    assert "access-control-allow-origin" not in answer.headers


def test_a_cross_site_push_reaches_no_socket_and_the_stacks_own_origin_does(
    local_stack: StackProcess,
) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            feed = await quiet_feed(session, local_stack)
            for origin in (EVIL, OTHER_LOOPBACK_PAGE):
                headers = {"Content-Type": "text/plain", "Origin": origin}
                answer = invoke(local_stack, "push", FEED_PUSH, headers)
                assert answer.status == 403
            await feed.assert_nothing_pending()
            # The good path: no Origin (boto3), or the gateway's own.
            for headers in ({}, {"Origin": local_stack.gateway}):
                answer = invoke(local_stack, "push", FEED_PUSH, headers)
                assert answer.status == 200, answer.text
                assert answer.json()["delivered"] >= 1
                assert (await feed.recv_until("feed_item"))["x"] == 1
            await feed.close()

    run(scenario)


def test_a_cross_site_post_to_a_connection_writes_nothing_and_closes_nothing(
    local_stack: StackProcess,
) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            sock, connection_id = await join_chat(session, local_stack, "alice", new_booking())
            path = urlsplit(local_stack.connection_url(connection_id)).path
            for origin in (EVIL, OTHER_LOOPBACK_PAGE):
                for method in ("POST", "DELETE", "GET"):
                    answer = send(
                        local_stack.gateway,
                        method,
                        path,
                        {"Content-Type": "text/plain", "Origin": origin},
                        b'{"type": "forged"}' if method == "POST" else None,
                    )
                    assert answer.status == 403, (method, answer.status, answer.text)
                    assert "is refused" in answer.json()["message"]
            await sock.assert_nothing_pending()  # nothing written, still open
            own = {"Origin": local_stack.gateway}
            answer = send(local_stack.gateway, "POST", path, own, b'{"type": "own"}')
            assert answer.status == 200, answer.text
            assert await sock.recv() == {"type": "own"}
            await sock.close()

    run(scenario)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/demo/api/dev/token"),
        ("POST", "/demo/api/dev/feed"),
        ("GET", "/demo/config"),
        ("GET", "/static/demo.js"),
    ],
)
def test_the_gateway_answers_no_other_page_beyond_the_client_module(
    local_stack: StackProcess, method: str, path: str
) -> None:
    body = json.dumps({"user_id": "alice", "title": "forged"}).encode() if method == "POST" else None
    for origin in (EVIL, OTHER_LOOPBACK_PAGE):
        headers = {"Content-Type": "text/plain", "Origin": origin}
        answer = send(local_stack.gateway, method, path, headers, body)
        assert answer.status == 403, (origin, answer.status, answer.text)
        assert "access-control-allow-origin" not in answer.headers
    headers = {"Content-Type": "application/json", "Origin": local_stack.gateway}
    own = send(local_stack.gateway, method, path, headers, body)
    assert own.status == 200, own.text


# -- the embedded DynamoDB ------------------------------------------------------------------


@pytest.mark.parametrize("origin", [EVIL, OTHER_LOOPBACK_PAGE, "null"])
def test_the_embedded_dynamodb_answers_no_other_origin(local_stack: StackProcess, origin: str) -> None:
    dynamodb = local_stack.endpoints["dynamodb"]
    preflight = send(
        dynamodb,
        "OPTIONS",
        "/",
        {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-amz-target",
        },
    )
    assert preflight.status == 403, (preflight.status, preflight.text)
    assert not [h for h in preflight.headers if h.startswith("access-control-")]
    body = json.dumps({"TableName": local_stack.endpoints["table"]}).encode()
    scan = send(dynamodb, "POST", "/", {**SCAN_HEADERS, "Origin": origin}, body)
    assert scan.status == 403, (scan.status, scan.text)
    assert scan.json()["__type"].endswith("AccessDeniedException")
    assert "answers no web page" in scan.json()["message"]
    assert "Items" not in scan.text
    assert not [h for h in scan.headers if h.startswith("access-control-")]


def test_the_embedded_dynamodb_still_answers_sdks_without_cors_headers(local_stack: StackProcess) -> None:
    body = json.dumps({"TableName": local_stack.endpoints["table"]}).encode()
    answer = send(local_stack.endpoints["dynamodb"], "POST", "/", SCAN_HEADERS, body)
    assert answer.status == 200, answer.text
    assert "Items" in answer.json()
    assert not [h for h in answer.headers if h.startswith("access-control-")]


# -- pages on loopback: the client module and development tokens ------------------------------


def preflight_headers(origin: str) -> dict[str, str]:
    """What a browser sends before a JSON POST from ``origin``."""
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }


@pytest.mark.parametrize("origin", ["http://127.0.0.1:5173", "http://localhost:8080", "http://[::1]:3000"])
def test_a_page_on_loopback_loads_the_client_module_and_gets_tokens(
    local_stack: StackProcess, origin: str
) -> None:
    module = send(local_stack.gateway, "GET", "/client/index.js", {"Origin": origin})
    assert module.status == 200
    assert module.headers["access-control-allow-origin"] == origin
    assert module.headers["vary"] == "Origin"
    assert "export class ChatSocket" in module.text

    preflight = send(
        local_stack.backend,
        "OPTIONS",
        "/dev/token",
        preflight_headers(origin),
    )
    assert preflight.status == 204, (preflight.status, preflight.text)
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"]

    body = json.dumps({"user_id": "alice"}).encode()
    headers = {"Origin": origin, "Content-Type": "application/json"}
    answer = send(local_stack.backend, "POST", "/dev/token", headers, body)
    assert answer.status == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == origin
    assert answer.json()["token"]


@pytest.mark.parametrize("origin", [EVIL, "null", "http://127.0.0.1.nip.io:5173", "file://"])
def test_other_pages_get_neither_the_module_nor_a_token(local_stack: StackProcess, origin: str) -> None:
    module = send(local_stack.gateway, "GET", "/client/index.js", {"Origin": origin})
    assert module.status == 403, module.status
    assert "access-control-allow-origin" not in module.headers
    preflight = send(
        local_stack.backend,
        "OPTIONS",
        "/dev/token",
        preflight_headers(origin),
    )
    assert preflight.status == 403
    assert "access-control-allow-origin" not in preflight.headers
    body = json.dumps({"user_id": "alice"}).encode()
    headers = {"Origin": origin, "Content-Type": "text/plain"}
    answer = send(local_stack.backend, "POST", "/dev/token", headers, body)
    assert answer.status == 403
    assert answer.json()["detail"].startswith(f"Origin {origin!r} is refused")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/dev/feed"),
        ("POST", "/dev/bookings/1/status"),
        ("POST", "/api/chat/ws/1/connect"),
        ("OPTIONS", "/dev/feed"),
        ("GET", "/openapi.json"),
    ],
)
def test_a_page_on_loopback_reaches_no_other_backend_route(
    local_stack: StackProcess, method: str, path: str
) -> None:
    body = json.dumps({"title": "forged", "status": "cancelled", "connection_id": "x"}).encode()
    headers = {"Origin": OTHER_LOOPBACK_PAGE, "Content-Type": "application/json"}
    answer = send(local_stack.backend, method, path, headers, body if method == "POST" else None)
    assert answer.status == 403, (answer.status, answer.text)
    assert "access-control-allow-origin" not in answer.headers
    # The backend's own page (/docs "Try it out") sends its own Origin, and is answered.
    own = send(local_stack.backend, "GET", "/openapi.json", {"Origin": local_stack.backend})
    assert own.status == 200


# -- the rules themselves -----------------------------------------------------------------


def test_the_configured_host_is_accepted_beside_loopback_and_never_resolved() -> None:
    exposed = Trust("192.0.2.10")
    assert exposed.host_allowed("192.0.2.10:3001")
    assert exposed.host_allowed("localhost:3001")
    assert exposed.is_local_origin("http://192.0.2.10:5173")
    assert not exposed.host_allowed("192.0.2.11:3001")
    loopback = Trust()
    # localhost.localdomain resolves to loopback on many machines: it is a name, and refused.
    assert not loopback.host_allowed("localhost.localdomain:3001")
    assert not loopback.is_local_origin("http://192.0.2.10:5173")
    assert not loopback.is_local_origin("ftp://127.0.0.1")
    assert Trust.is_same_origin("http://127.0.0.1:3001", "127.0.0.1:3001")
    assert not Trust.is_same_origin("http://127.0.0.1:3002", "127.0.0.1:3001")
    assert not Trust.is_same_origin("https://127.0.0.1:3001", "127.0.0.1:3001")
