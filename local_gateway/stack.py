"""The whole local stack: embedded DynamoDB, reference backend, the app and its gateway.

``LocalStack.start()`` binds every port first (so a busy port fails fast with a
clear message), sets the app's environment in this process, creates the
connections table from ``chalicelib.schema``, imports the unmodified app and
serves the gateway. ``stop()`` closes every socket (each fires
``$disconnect``) and stops the servers in reverse order.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from local_gateway import exposure
from local_gateway.aws_shapes import new_api_id
from local_gateway.runtime import FUNCTION_PREFIX, AppRuntime, load_app
from local_gateway.server import GatewayOptions, LocalGateway
from local_gateway.trust import Trust

logger = logging.getLogger("local_gateway")

DEFAULT_TABLE = f"{FUNCTION_PREFIX}-websocket-connections"


class StartupError(Exception):
    """The stack could not start (a port in use, an unreachable endpoint); the message says which."""


@dataclass
class StackOptions:
    host: str = "127.0.0.1"
    port: int = 3001
    stage: str = "development"
    backend_url: str | None = None
    backend_port: int = 8000
    dynamodb_endpoint: str | None = None
    dynamodb_port: int = 8002
    table: str = DEFAULT_TABLE
    idle_timeout: float = 600.0
    max_lifetime: float = 7200.0
    verbose: bool = False
    #: Serve the Management API's fault-injection routes (``local_gateway.faults``); tests only.
    fault_injection: bool = False
    #: Every function's timeout in seconds (a test facility); None: .chalice/config.json's.
    lambda_timeout: float | None = None
    #: Allow a ``host`` beyond loopback (``local_gateway.exposure``): everything here is unauthenticated.
    expose_insecure_local_stack: bool = False
    #: Frames of one socket being handled at once; past it the gateway stops reading that socket.
    max_frames_in_flight: int = 16


def bind(host: str, port: int, what: str, flag: str) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only for proto 6.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(
            f"cannot listen on {host}:{port} for the {what} ({exc.strerror}); try {flag}"
        ) from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


class _Backend:
    """The reference backend under uvicorn, in a thread."""

    def __init__(self, sock: socket.socket, app: Any, verbose: bool) -> None:
        import uvicorn

        config = uvicorn.Config(
            app,
            log_level="info" if verbose else "warning",
            access_log=verbose,
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self._sock = sock
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="backend", daemon=True
        )

    def start(self, timeout: float = 15.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise StartupError("the reference backend did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


class LocalOnlyWsgi:
    """The embedded DynamoDB behind ``trust``: its own ``Host`` only, and no web page at all.

    moto answers every origin's CORS preflight and request (flask-cors); here a
    request with an ``Origin`` other than the server's own is refused before
    moto sees it, and no answer carries CORS headers, so no page can Scan the
    table's stored tokens.
    """

    def __init__(self, app: Any, trust: Trust) -> None:
        self.app = app
        self.trust = trust
        # One request at a time: moto's update_item is not atomic across its threads (two
        # concurrent conditional ADDs to one item can lose one, or fail the other's condition),
        # where DynamoDB applies each write to an item whole.
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        host = environ.get("HTTP_HOST")
        origin = environ.get("HTTP_ORIGIN")
        if not self.trust.host_allowed(host):
            return self._refuse(start_response, self.trust.host_refusal(host))
        if origin is not None and not Trust.is_same_origin(origin, host):
            reason = Trust.origin_refusal(origin, "the embedded DynamoDB answers no web page")
            return self._refuse(start_response, reason)

        def without_cors(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kept = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
            return start_response(status, kept, exc_info)

        with self._lock:
            return self.app(environ, without_cors)

    @staticmethod
    def _refuse(start_response: Any, reason: str) -> list[bytes]:
        body = json.dumps(
            {"__type": "com.amazonaws.dynamodb.v20120810#AccessDeniedException", "message": reason}
        ).encode("utf-8")
        start_response(
            "403 Forbidden",
            [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(body)))],
        )
        return [body]


def moto_server(host: str, port: int) -> Any:
    """moto's threaded server behind ``LocalOnlyWsgi``, answering without Nagle's delay.

    Werkzeug writes a response's headers and body separately; with Nagle's
    algorithm on, the body waits for the client's delayed ACK (about 40 ms on
    Linux) on every DynamoDB call.
    """
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import make_server

    class NoDelayHandler(MotoRequestHandler):
        disable_nagle_algorithm = True

    class NoDelayMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = LocalOnlyWsgi(DomainDispatcherApplication(create_backend_app), Trust(host))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=NoDelayHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return NoDelayMotoServer(ip_address=host, port=port, verbose=False)


class LocalStack:
    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.gateway_url = ""
        self.backend_url = ""
        self.dynamodb_endpoint = ""
        self.api_id = new_api_id()
        self._moto: Any = None
        self._backend: _Backend | None = None
        self._runtime: AppRuntime | None = None
        self._runner: web.AppRunner | None = None
        self.gateway: LocalGateway | None = None

    @property
    def ws_url(self) -> str:
        return self.gateway_url.replace("http://", "ws://", 1) + f"/{self.options.stage}"

    def endpoints(self) -> dict[str, str]:
        extra = {"faults": f"{self.gateway_url}/_local/faults"} if self.options.fault_injection else {}
        return {
            "gateway": self.gateway_url,
            "websocket": self.ws_url,
            "management_api": f"{self.gateway_url}/{self.options.stage}",
            "backend": self.backend_url,
            "dynamodb": self.dynamodb_endpoint,
            "table": self.options.table,
            "stage": self.options.stage,
            **extra,
        }

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        o = self.options
        if not exposure.is_loopback(o.host):
            if not o.expose_insecure_local_stack:
                raise StartupError(exposure.refusal(o.host))
            logger.warning("%s", exposure.warning(o.host))
        gateway_sock = bind(o.host, o.port, "gateway", "--port")
        self.gateway_url = f"http://{o.host}:{port_of(gateway_sock)}"
        backend_sock = None
        if o.backend_url is None:
            backend_sock = bind(o.host, o.backend_port, "reference backend", "--backend-port")
            self.backend_url = f"http://{o.host}:{port_of(backend_sock)}"
        else:
            self.backend_url = o.backend_url.rstrip("/")
        region = self._set_environment()
        if o.dynamodb_endpoint is None:
            self.dynamodb_endpoint = self._start_moto()
        else:
            self.dynamodb_endpoint = o.dynamodb_endpoint.rstrip("/")
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = self.dynamodb_endpoint
        self._create_table(region)
        if backend_sock is not None:
            from local_gateway.reference_backend import BackendSettings, create_app

            settings = BackendSettings(lambda_endpoint=self.gateway_url, region=region, host=o.host)
            self._backend = _Backend(backend_sock, create_app(settings), o.verbose)
            self._backend.start()
        self._runtime = AppRuntime(load_app(), region=region, verbose=o.verbose, timeout=o.lambda_timeout)
        self.gateway = LocalGateway(
            self._runtime,
            GatewayOptions(
                stage=o.stage,
                idle_timeout=o.idle_timeout,
                max_lifetime=o.max_lifetime,
                fault_injection=o.fault_injection,
                max_frames_in_flight=o.max_frames_in_flight,
                host=o.host,
            ),
            api_id=self.api_id,
            backend_url=self.backend_url,
        )
        self._runner = web.AppRunner(self.gateway.application(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, gateway_sock, shutdown_timeout=5.0).start()

    def _set_environment(self) -> str:
        """The app's configuration (docs/operations.md, "Settings"), set before it is imported."""
        o = self.options
        env = os.environ
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = region
        if o.dynamodb_endpoint is None or not env.get("AWS_ACCESS_KEY_ID"):
            # Dummy credentials: everything is local, but the app signs its Management API calls.
            env["AWS_ACCESS_KEY_ID"] = "local"
            env["AWS_SECRET_ACCESS_KEY"] = "local"
            env.pop("AWS_SESSION_TOKEN", None)
            env.pop("AWS_PROFILE", None)
        env["BACKEND_URL"] = self.backend_url
        env["CONNECTIONS_TABLE"] = o.table
        env["API_GATEWAY_ENDPOINT"] = f"{self.gateway_url}/{o.stage}"
        env["AWS_ENDPOINT_URL_LAMBDA"] = self.gateway_url
        env["DELIVER_FUNCTION_NAME"] = f"{FUNCTION_PREFIX}-deliver"
        env["FANOUT_FUNCTION_NAME"] = f"{FUNCTION_PREFIX}-fanout"
        env.setdefault("POWERTOOLS_SERVICE_NAME", "ws-proxy")
        if not o.verbose:
            env["POWERTOOLS_METRICS_DISABLED"] = "true"
        return region

    def _start_moto(self) -> str:
        o = self.options
        # moto's server thread hangs on a busy port instead of failing: check it first.
        bind(o.host, o.dynamodb_port, "embedded DynamoDB", "--dynamodb-port").close()
        logging.getLogger("werkzeug").setLevel(logging.INFO if o.verbose else logging.WARNING)
        self._moto = moto_server(o.host, o.dynamodb_port)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        return f"http://{host}:{port}"

    def _create_table(self, region: str) -> None:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        from infra.table import ensure_table

        client = boto3.client(
            "dynamodb",
            endpoint_url=self.dynamodb_endpoint,
            region_name=region,
            config=Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2}),
        )
        try:
            created = ensure_table(client, self.options.table)
        except (BotoCoreError, ClientError) as exc:
            raise StartupError(f"DynamoDB at {self.dynamodb_endpoint} is not usable: {exc}") from exc
        logger.debug("table %s %s", self.options.table, "created" if created else "exists")

    async def stop(self) -> None:
        """Close every socket ($disconnect runs for each), then stop the servers."""
        if self._runner is not None:
            await self._runner.cleanup()  # runs the gateway's shutdown: closes every socket
            self._runner = None
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None
        if self._backend is not None:
            self._backend.stop()
            self._backend = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
