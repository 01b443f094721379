"""The local WebSocket API and its Management API: they share the live sockets.

- ``GET /`` or ``/{stage}`` with an upgrade: a WebSocket connection. ``$connect``
  runs before the handshake completes; a non-200 answer fails the handshake
  with that status. Each frame becomes a ``$default`` event; every close, clean
  or not, fires ``$disconnect`` exactly once.
- ``POST|GET|DELETE [/{stage}]/@connections/{id}``: the Management API, with
  API Gateway's answers (410 while ``$connect`` runs and after close, 413 above
  128 KB). Signatures are accepted unchecked. With fault injection on
  (``local_gateway.faults``), a post may be answered by a rule first.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.typedefs import Handler

from local_gateway.aws_http import aws_error
from local_gateway.aws_shapes import (
    Identity,
    SocketInfo,
    connect_event,
    disconnect_event,
    message_event,
    new_connection_id,
    new_request_id,
)
from local_gateway.faults import ERROR_TYPES, ManagementFaults
from local_gateway.runtime import AppRuntime
from local_gateway.tasks import BackgroundTasks

logger = logging.getLogger("local_gateway")

#: API Gateway's message limit, both ways.
MAX_MESSAGE_BYTES = 128 * 1024

#: disconnectReason texts for the close codes the gateway reports.
_REASONS = {
    1000: "Connection Closed Normally",
    1001: "Going away",
    1005: "Client-side close frame status not set",
    1006: "Connection was closed abnormally",
    1009: "Message too big",
}


class SocketState(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"


@dataclass
class WebSocketApiOptions:
    stage: str = "development"
    idle_timeout: float = 600.0
    max_lifetime: float = 7200.0
    #: API Gateway's integration timeout: a $connect slower than this fails the handshake (504).
    integration_timeout: float = 29.0
    #: Frames of one socket handled at once. With that many in flight the gateway stops reading
    #: the socket until one finishes: the rest wait in the kernel's buffers and the client's
    #: sends slow down (TCP flow control), instead of queueing in memory without bound.
    max_frames_in_flight: int = 16


@dataclass
class ClientSocket:
    """One client's socket as the gateway sees it, from ``$connect`` to ``$disconnect``."""

    info: SocketInfo
    state: SocketState = SocketState.CONNECTING
    ws: web.WebSocketResponse | None = None
    opened: float = field(default_factory=time.monotonic)
    last_active: float = field(default_factory=time.monotonic)
    last_active_at: float = field(default_factory=time.time)
    #: Set when the gateway closes the socket itself (DELETE, idle, lifetime, shutdown).
    server_close: tuple[int, str] | None = None
    closing: asyncio.Task[Any] | None = None
    disconnected: bool = False
    #: Frames read from this socket whose $default has not finished.
    in_flight: int = 0
    #: Whether reading has waited for ``max_frames_in_flight`` (logged once per socket).
    throttled: bool = False

    def touch(self) -> None:
        self.last_active = time.monotonic()
        self.last_active_at = time.time()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class WebSocketApi:
    """The live sockets, the WebSocket routes that open them and the Management API that reaches them."""

    def __init__(
        self,
        runtime: AppRuntime,
        options: WebSocketApiOptions,
        *,
        api_id: str,
        tasks: BackgroundTasks,
        faults: ManagementFaults | None = None,
        page: Handler | None = None,
    ) -> None:
        """``faults``: rules that answer posts first; ``page``: answers ``GET /`` without an upgrade."""
        self.runtime = runtime
        self.options = options
        self.api_id = api_id
        self.tasks = tasks
        self.faults = faults
        self._page = page
        self.sockets: dict[str, ClientSocket] = {}
        self._closing = False

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/", self.handle_socket)
        for prefix in ("", "/{stage}"):
            router.add_post(prefix + "/@connections/{connection_id}", self.post_to_connection)
            router.add_get(prefix + "/@connections/{connection_id}", self.get_connection)
            router.add_delete(prefix + "/@connections/{connection_id}", self.delete_connection)
        router.add_get("/{stage}", self.handle_socket)

    async def close_all(self) -> None:
        """Close every socket (1001, as API Gateway does on a deployment); refuse new ones."""
        self._closing = True
        live = [s for s in self.sockets.values() if s.state is SocketState.OPEN]
        await asyncio.gather(*(self._server_close(s, WSCloseCode.GOING_AWAY, "Going away") for s in live))

    # -- the WebSocket API -----------------------------------------------------

    def _stage_ok(self, request: web.Request) -> bool:
        stage = request.match_info.get("stage")
        return stage is None or stage == self.options.stage

    async def handle_socket(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            if request.match_info.get("stage") is None and self._page is not None:
                return await self._page(request)
            raise web.HTTPNotFound(text="not found: WebSocket connections only on this path\n")
        if not self._stage_ok(request):
            return aws_error(403, "ForbiddenException", "Forbidden")
        if self._closing:
            return web.Response(status=503, text="the gateway is shutting down")
        info = SocketInfo(
            connection_id=new_connection_id(),
            api_id=self.api_id,
            stage=self.options.stage,
            domain_name=request.host,
            identity=Identity(
                source_ip=request.remote or "127.0.0.1", user_agent=request.headers.get("User-Agent")
            ),
        )
        sock = ClientSocket(info)
        self.sockets[info.connection_id] = sock
        try:
            return await self._serve(request, sock)
        finally:
            sock.state = SocketState.CLOSED
            self.sockets.pop(info.connection_id, None)

    async def _serve(self, request: web.Request, sock: ClientSocket) -> web.StreamResponse:
        event = connect_event(sock.info, request.headers.items(), request.query.items())
        try:
            invocation = await asyncio.wait_for(
                self.runtime.websocket("$connect", event), self.options.integration_timeout
            )
        except TimeoutError:
            logger.warning("$connect     %-16s timed out: handshake fails 504", sock.info.connection_id)
            return web.json_response({"message": "Endpoint request timed out"}, status=504)
        answer = invocation.result if isinstance(invocation.result, dict) else {}
        if invocation.failed:
            return web.json_response({"message": "Internal server error"}, status=502)
        status = int(answer.get("statusCode", 200))
        if status != 200:
            body = answer.get("body")
            return web.Response(status=status, text=body if isinstance(body, str) else "")
        protocols: tuple[str, ...] = ()
        for key, value in (answer.get("headers") or {}).items():
            if key.lower() == "sec-websocket-protocol" and value:
                protocols = (str(value),)
        ws = web.WebSocketResponse(
            protocols=protocols,
            max_msg_size=MAX_MESSAGE_BYTES,
            autoclose=False,
            autoping=True,
            compress=False,
            timeout=5.0,  # how long a close waits for the client's close frame
        )
        try:
            await ws.prepare(request)
        except (ConnectionError, RuntimeError):
            # The client left while $connect ran: the connection existed, so $disconnect runs.
            await self._disconnect(sock, 1006)
            return ws
        sock.ws = ws
        sock.state = SocketState.OPEN
        sock.touch()
        watchdog = asyncio.create_task(self._watch(sock))
        code = 1006
        try:
            code = await self._receive(sock, ws)
        finally:
            watchdog.cancel()  # a close it started goes on: it is shielded
            sock.state = SocketState.CLOSED
            if sock.closing is not None:
                await asyncio.wait({sock.closing}, timeout=10)
            if not ws.closed:
                await ws.close(code=WSCloseCode.OK)
            if sock.server_close is not None:
                code = sock.server_close[0]
            await self._disconnect(sock, code)
        return ws

    async def _receive(self, sock: ClientSocket, ws: web.WebSocketResponse) -> int:
        """Read frames until the socket closes; the close code $disconnect reports.

        Back-pressure: with ``max_frames_in_flight`` frames of this socket in
        flight, the next read waits for one of them to finish.
        """
        slots = asyncio.Semaphore(self.options.max_frames_in_flight)
        while True:
            await slots.acquire()
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                sock.touch()
                sock.in_flight += 1
                if sock.in_flight >= self.options.max_frames_in_flight and not sock.throttled:
                    sock.throttled = True
                    logger.info(
                        "%-12s %-16s %d frames in flight: reading paused until one finishes",
                        "back-pressure",
                        sock.info.connection_id,
                        sock.in_flight,
                    )
                task = self.tasks.spawn(self._message(sock, msg.data))
                task.add_done_callback(lambda _: self._finished(sock, slots))
                continue
            slots.release()
            if msg.type is WSMsgType.CLOSE:
                sock.state = SocketState.CLOSED  # before answering the close: no post succeeds from here on
                code = int(msg.data or 0) or 1005
                await ws.close(code=code if code != 1005 else WSCloseCode.OK)
                return code
            if msg.type is WSMsgType.ERROR:
                exc = msg.data
                if isinstance(exc, aiohttp.WebSocketError) and exc.code == WSCloseCode.MESSAGE_TOO_BIG:
                    return 1009  # aiohttp has already closed with 1009
                return 1006
            # CLOSING / CLOSED: closed by the server, or the peer vanished
            return sock.server_close[0] if sock.server_close else 1006

    @staticmethod
    def _finished(sock: ClientSocket, slots: asyncio.Semaphore) -> None:
        sock.in_flight -= 1
        slots.release()

    async def _message(self, sock: ClientSocket, data: str | bytes) -> None:
        event = message_event(sock.info, data)
        invocation = await self.runtime.websocket("$default", event)
        if invocation.failed and sock.state is SocketState.OPEN and sock.ws is not None:
            # What API Gateway sends the client when the integration fails.
            error = {
                "message": "Internal server error",
                "connectionId": sock.info.connection_id,
                "requestId": event["requestContext"]["requestId"],
            }
            with contextlib.suppress(ConnectionError, RuntimeError):
                await sock.ws.send_str(json.dumps(error))

    async def _disconnect(self, sock: ClientSocket, code: int) -> None:
        if sock.disconnected:
            return
        sock.disconnected = True
        reason = sock.server_close[1] if sock.server_close else _REASONS.get(code, "")
        event = disconnect_event(sock.info, code, reason)
        await self.runtime.websocket("$disconnect", event)

    async def _server_close(self, sock: ClientSocket, code: int, reason: str) -> None:
        if sock.ws is None or sock.state is not SocketState.OPEN:
            return
        sock.server_close = (code, reason)
        sock.state = SocketState.CLOSED
        sock.closing = asyncio.create_task(sock.ws.close(code=code, message=reason.encode("utf-8")))
        await asyncio.shield(sock.closing)

    async def _watch(self, sock: ClientSocket) -> None:
        """Close the socket at the idle timeout or at the end of its lifetime (1001 Going away)."""
        while sock.state is SocketState.OPEN:
            now = time.monotonic()
            idle_at = sock.last_active + self.options.idle_timeout
            end_at = sock.opened + self.options.max_lifetime
            if now >= min(idle_at, end_at):
                why = "idle timeout" if idle_at <= end_at else "maximum lifetime"
                logger.info("%-12s %-16s closing: %s", "timeout", sock.info.connection_id, why)
                await self._server_close(sock, WSCloseCode.GOING_AWAY, "Going away")
                return
            await asyncio.sleep(min(idle_at, end_at) - now)

    # -- the Management API ------------------------------------------------------

    def _live(self, request: web.Request) -> ClientSocket | None:
        sock = self.sockets.get(request.match_info["connection_id"])
        if sock is None or sock.state is not SocketState.OPEN or sock.ws is None or sock.ws.closed:
            return None
        return sock

    async def post_to_connection(self, request: web.Request) -> web.Response:
        if not self._stage_ok(request):
            return aws_error(403, "ForbiddenException", "Forbidden")
        data = await request.read()
        connection_id = request.match_info["connection_id"]
        if len(data) > MAX_MESSAGE_BYTES:
            logger.info("%-12s %-16s 413 (%d bytes)", "@connections", connection_id, len(data))
            return aws_error(413, "PayloadTooLargeException", "Request entity too large")
        rule = self.faults.rule_for(connection_id) if self.faults is not None else None
        if rule is not None:
            if rule.delay:
                await asyncio.sleep(rule.delay)  # a Management API that hangs
            injected = rule.status
            logger.debug("%-12s %-16s %d (injected)", "@connections", connection_id, injected)
            return aws_error(injected, ERROR_TYPES[injected], None if injected == 410 else "Injected fault")
        sock = self._live(request)
        if sock is None or sock.ws is None:
            logger.debug("%-12s %-16s 410", "@connections", connection_id)
            return aws_error(410, "GoneException", None)
        try:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                await sock.ws.send_bytes(data)
            else:
                await sock.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            return aws_error(410, "GoneException", None)
        sock.touch()
        logger.debug("%-12s %-16s 200 (%d bytes)", "@connections", connection_id, len(data))
        return web.Response(status=200, headers={"x-amzn-RequestId": new_request_id()})

    async def get_connection(self, request: web.Request) -> web.Response:
        if not self._stage_ok(request):
            return aws_error(403, "ForbiddenException", "Forbidden")
        sock = self._live(request)
        if sock is None:
            return aws_error(410, "GoneException", None)
        # The wire names (botocore maps them to ConnectedAt, Identity.SourceIp, ...).
        identity = {
            "sourceIp": sock.info.identity.source_ip,
            "userAgent": sock.info.identity.user_agent or "",
        }
        return web.json_response(
            {
                "connectedAt": _iso(sock.info.connected_at / 1000),
                "identity": identity,
                "lastActiveAt": _iso(sock.last_active_at),
            }
        )

    async def delete_connection(self, request: web.Request) -> web.Response:
        if not self._stage_ok(request):
            return aws_error(403, "ForbiddenException", "Forbidden")
        sock = self._live(request)
        if sock is None:
            return aws_error(410, "GoneException", None)
        logger.info("%-12s %-16s DELETE: closing", "@connections", sock.info.connection_id)
        await self._server_close(sock, WSCloseCode.OK, "Connection Closed Normally")
        return web.Response(status=204)
