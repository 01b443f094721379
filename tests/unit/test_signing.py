"""Our SigV4 signer against botocore's SigV4Auth: the same Authorization, byte for byte, on the wire too."""

from __future__ import annotations

import socket
import threading
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.gateway import ConnectionGateway
from chalicelib.signing import Signer
from chalicelib.transport import Transport

ENDPOINTS = [
    "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/development",
    "https://chat.example.com/v1/ws",
    "https://chat.example.com:443/development",
    "https://chat.example.com:8443/development",
    "http://127.0.0.1:3001/development",
    "http://localhost:80/prod",
]
CREDENTIALS = [
    ReadOnlyCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None),
    ReadOnlyCredentials("ASIAEXAMPLE", "secret/with+chars=", "IQoJb3JpZ2luX2VjE//////////wEaCXVz+token="),
]
TRANSPORT = Transport(4)


def botocore_headers(
    endpoint: str, path: str, credentials: ReadOnlyCredentials, region: str, data: bytes
) -> Any:
    parts = urlsplit(endpoint)
    request = AWSRequest(method="POST", url=f"{parts.scheme}://{parts.netloc}{path}", data=data)
    request.headers["Content-Type"] = "application/json"
    SigV4Auth(credentials, "execute-api", region).add_auth(request)
    return request.headers


def ours(api: ConnectionGateway, cid: str, data: bytes, amz_date: str) -> dict[str, str]:
    signer = api.signer(data)
    assert isinstance(signer, Signer)
    return signer.headers(api.path(cid), amz_date)


@settings(max_examples=300, deadline=None)
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    credentials=st.sampled_from(CREDENTIALS),
    region=st.sampled_from(["us-east-1", "eu-west-1", "ap-southeast-2"]),
    cid=st.one_of(
        st.text(
            alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-",
            min_size=1,
            max_size=20,
        ),
        st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20),
    ),
    data=st.binary(max_size=300),
)
def test_signature_matches_botocore(
    endpoint: str, credentials: ReadOnlyCredentials, region: str, cid: str, data: bytes
) -> None:
    api = ConnectionGateway(endpoint, transport=TRANSPORT, credentials=lambda: credentials, region=region)
    expected = botocore_headers(endpoint, api.path(cid), credentials, region, data)
    mine = ours(api, cid, data, expected["X-Amz-Date"])
    assert mine["Authorization"] == expected["Authorization"]
    assert mine.get("X-Amz-Security-Token") == expected.get("X-Amz-Security-Token")
    assert mine["X-Amz-Date"] == expected["X-Amz-Date"]


def test_signing_key_follows_rotated_credentials_and_the_date(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-day key cache never signs with yesterday's key or a rotated-out secret."""
    import datetime

    import botocore.auth

    current = [CREDENTIALS[0]]
    api = ConnectionGateway(
        ENDPOINTS[0], transport=TRANSPORT, credentials=lambda: current[0], region="eu-west-1"
    )
    seen = set()
    for credentials in (CREDENTIALS[0], ReadOnlyCredentials("AKIDEXAMPLE", "rotated-secret", None)):
        current[0] = credentials
        # botocore's clock is naive UTC: the moments are too
        for moment in (datetime.datetime(2026, 11, 25, 23, 59, 59), datetime.datetime(2026, 11, 26, 0, 0, 1)):  # noqa: DTZ001
            monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda m=moment: m)
            expected = botocore_headers(ENDPOINTS[0], api.path("Ab="), credentials, "eu-west-1", b"{}")
            mine = ours(api, "Ab=", b"{}", moment.strftime("%Y%m%dT%H%M%SZ"))
            assert mine["Authorization"] == expected["Authorization"]
            seen.add(mine["Authorization"])
    assert len(seen) == 4


class RecordingServer:
    """Answers 200 to every request and keeps each one as it arrived on the wire."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
                head, sep, rest = buffer.partition(b"\r\n\r\n")
                if not sep:
                    continue
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ")
                headers = dict(line.split(": ", 1) for line in lines[1:])
                length = int(headers["Content-Length"])
                if len(rest) < length:
                    continue
                self.requests.append((method, path, headers, rest[:length]))
                buffer = rest[length:]
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize("credentials", CREDENTIALS)
def test_requests_on_the_wire_carry_a_signature_botocore_computes_from_them(
    credentials: ReadOnlyCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signature holds for the bytes actually sent: method, path, Host header, body."""
    import datetime

    import botocore.auth

    server = RecordingServer()
    transport = Transport(2)
    gateway = ConnectionGateway(
        f"http://127.0.0.1:{server.port}/development",
        transport=transport,
        credentials=lambda: credentials,
        region="eu-west-1",
    )
    ids = ["Ab+/cd=", "x y", "..", "é~"]
    try:
        assert gateway.post_many(ids, b'{"m":"\xc3\xa9"}').delivered == len(ids)
    finally:
        transport.close()
        server.sock.close()
    assert len(server.requests) == len(ids)
    for method, path, headers, body in server.requests:
        assert method == "POST"
        assert headers["Host"] == f"127.0.0.1:{server.port}"
        moment = datetime.datetime.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")  # noqa: DTZ007 - naive UTC, as botocore
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda m=moment: m)
        request = AWSRequest(method=method, url=f"http://{headers['Host']}{path}", data=body)
        request.headers["Content-Type"] = headers["Content-Type"]
        SigV4Auth(credentials, "execute-api", "eu-west-1").add_auth(request)
        assert headers["Authorization"] == request.headers["Authorization"]
        assert headers.get("X-Amz-Security-Token") == request.headers.get("X-Amz-Security-Token")
