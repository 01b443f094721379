"""Starting and stopping the benchmarks' servers, each in its own process."""

from __future__ import annotations

import json
import os
import selectors
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

#: Dummy credentials: the benches talk to 127.0.0.1 only and must never find real ones.
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def use_dummy_aws_env() -> None:
    """Point this process's AWS SDK at dummy credentials and no profile files."""
    os.environ.update(DUMMY_AWS_ENV)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        os.environ.pop(name, None)


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    scheme: str = "http"

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        return standin_stats(self.base)


def standin_stats(base: str) -> dict[str, Any]:
    """A stand-in's ``/_stats`` (its posts and backend calls so far, its CPU)."""
    context = ssl._create_unverified_context() if base.startswith("https:") else None  # noqa: S323, SLF001 - a loopback stand-in's certificate
    with urllib.request.urlopen(base + "/_stats", timeout=5, context=context) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


def _wait_ready(process: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """The first stdout line starting with ``marker``, within ``timeout`` seconds."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                continue
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"server exited before it was ready (code {process.poll()})")
            if line.startswith(marker):
                return line
    finally:
        selector.close()
    raise RuntimeError(f"server not ready within {timeout:.0f} s")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        if process.stdin is not None:
            with suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
    if process.stdout is not None:
        process.stdout.close()


@contextmanager
def standin(delay: float = 0.02, tls: tuple[str, str] | None = None) -> Iterator[Server]:
    """The Management API + backend stand-in (``bench.standin``), in its own process."""
    process = subprocess.Popen(
        [PY, "-m", "bench.standin", "--delay", str(delay), *(("--tls", *tls) if tls else ())],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = _wait_ready(process, "READY ", timeout=30)
        server = Server(process, int(line.split()[1]), "https" if tls else "http")
        yield server
    finally:
        _stop(process)


def serve_moto() -> None:
    """moto's DynamoDB on an ephemeral port, keep-alive as DynamoDB is, until stdin closes.

    Werkzeug's own request handler closes every connection (it answers
    ``Connection: close`` and then discards whatever the client sent next), so each
    call would open a TCP connection; DynamoDB keeps them alive, and the stand-in
    must not be the bottleneck. This handler reads each request's body whole, runs
    moto's WSGI app, and answers with a ``Content-Length`` in one write, without
    Nagle's delay, on a connection kept open.
    """
    import io
    import logging

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = DomainDispatcherApplication(create_backend_app)

    class KeepAlive(MotoRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        wbufsize = -1  # head and body written together, flushed once per answer

        def run_wsgi(self) -> None:
            environ = self.make_environ()
            stream = environ["wsgi.input"]
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = stream.read() if environ.get("wsgi.input_terminated") else stream.read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            answer: list[Any] = []
            chunks: list[bytes] = []

            def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                answer[:] = [status, headers]
                return chunks.append

            result = app(environ, start_response)
            try:
                chunks.extend(result)
            finally:
                getattr(result, "close", lambda: None)()
            data = b"".join(chunks)
            code, _, reason = answer[0].partition(" ")
            self.send_response(int(code), reason)
            for name, value in answer[1]:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=KeepAlive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("READY", server.server_port, flush=True)
    sys.stdin.read()
    server.shutdown()


@contextmanager
def moto_server() -> Iterator[Server]:
    """moto's DynamoDB emulation over HTTP (``serve_moto``), in its own process, on an ephemeral port."""
    env = {**os.environ, **DUMMY_AWS_ENV}
    process = subprocess.Popen(
        [PY, "-c", "from bench.servers import serve_moto; serve_moto()"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = _wait_ready(process, "READY ", timeout=60)
        yield Server(process, int(line.split()[1]))
    finally:
        _stop(process)


def run_json(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    preexec_fn: Any = None,
    cwd: str | Path = ROOT,
) -> Any:
    """Run ``python <args>`` in a fresh interpreter; its last stdout line is JSON."""
    completed = subprocess.run(
        [PY, *args],
        preexec_fn=preexec_fn,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def connection_item(
    booking: str, connection_id: str, connection_type: str, now: int, *, kinds: bool = True
) -> dict[str, Any]:
    """A connections-table item for a booking's connection (no token: not read here).

    ``kinds``: as this code writes it (the channel key ``booking#{booking}``, the booking
    id apart); without, as code before channel kinds did (the raw booking id), for the
    baselines that run that code.
    """
    from chalicelib.schema import PARTITION_KEY, SORT_KEY

    item = {
        PARTITION_KEY: {"S": f"booking#{booking}" if kinds else booking},
        SORT_KEY: {"S": connection_id},
        "connection_type": {"S": connection_type},
        "user_id": {"S": f"user_{connection_id}"},
        "created_at": {"N": str(now - 3600)},
        "ttl": {"N": str(now + 86400)},
    }
    if kinds:
        item["booking"] = {"S": booking}
    return item


def seed_channel(
    client: Any,
    table: str,
    channel: str,
    ids: Sequence[str],
    connection_type: str = "chat",
    *,
    kinds: bool = True,
) -> None:
    """Write one channel's connections with ``BatchWriteItem`` (bounded re-tries of leftovers)."""
    now = int(time.time())
    for start in range(0, len(ids), 25):
        request: dict[str, Any] = {
            table: [
                {"PutRequest": {"Item": connection_item(channel, cid, connection_type, now, kinds=kinds)}}
                for cid in ids[start : start + 25]
            ]
        }
        for _ in range(10):
            request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
            if not request:
                break
        else:
            raise RuntimeError("BatchWriteItem kept leaving items unprocessed")


def self_signed_certificate(directory: str) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, PEM files in ``directory`` (for TLS stand-ins)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = Path(directory, "cert.pem"), Path(directory, "key.pem")
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(certfile), str(keyfile)
