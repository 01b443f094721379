"""The gateway's one port: the APIs it emulates and the demo page, put together.

- ``websocket_api``: the WebSocket API and the Management API (they share the sockets);
- ``lambda_api``: the Lambda Invoke API for ``deliver``, ``push`` and ``fanout``;
- ``faults``: ``/_local/faults``, only with fault injection on (a test facility);
- ``demo``: the demo page, its files and its same-origin calls to the backend;
- ``trust``: in front of all of them (``LocalGateway.guard``): a ``Host`` that is not
  the stack's, or an ``Origin`` that is not its own, is refused (403, one line why),
  except that pages on loopback may load the client module (``/client/``, with CORS)
  and open WebSockets (the app checks their ``Origin``, as in AWS).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from local_gateway.aws_http import aws_error
from local_gateway.demo import CLIENT_PREFIX, DemoSite
from local_gateway.faults import FaultRulesApi, ManagementFaults
from local_gateway.lambda_api import MAX_SYNC_PAYLOAD, LambdaInvokeApi
from local_gateway.runtime import AppRuntime
from local_gateway.tasks import BackgroundTasks
from local_gateway.trust import Trust
from local_gateway.websocket_api import WebSocketApi, WebSocketApiOptions

logger = logging.getLogger("local_gateway")


@dataclass
class GatewayOptions:
    stage: str = "development"
    idle_timeout: float = 600.0
    max_lifetime: float = 7200.0
    #: Serve ``/_local/faults`` and apply its rules to posts (a test facility; off by default).
    fault_injection: bool = False
    #: Frames of one socket handled at once (back-pressure past it, ``WebSocketApiOptions``).
    max_frames_in_flight: int = 16
    #: The address the stack listens on (``--host``): its name is accepted as ``Host``.
    host: str = "127.0.0.1"


class LocalGateway:
    """Every API on one aiohttp application; shutdown closes the sockets and drains the work."""

    def __init__(
        self, runtime: AppRuntime, options: GatewayOptions, *, api_id: str, backend_url: str
    ) -> None:
        self.options = options
        self.tasks = BackgroundTasks()
        self.faults = ManagementFaults() if options.fault_injection else None
        self.demo = DemoSite(stage=options.stage, backend_url=backend_url)
        self.websocket_api = WebSocketApi(
            runtime,
            WebSocketApiOptions(
                stage=options.stage,
                idle_timeout=options.idle_timeout,
                max_lifetime=options.max_lifetime,
                max_frames_in_flight=options.max_frames_in_flight,
            ),
            api_id=api_id,
            tasks=self.tasks,
            faults=self.faults,
            page=self.demo.page,
        )
        self.lambda_api = LambdaInvokeApi(runtime, tasks=self.tasks)
        self.trust = Trust(options.host)

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse another ``Host`` and another page's ``Origin``; CORS for the client module on loopback."""
        host = request.headers.get(hdrs.HOST)
        if not self.trust.host_allowed(host):
            return self._refuse(request, self.trust.host_refusal(host))
        origin = request.headers.get(hdrs.ORIGIN)
        client_module = request.method in ("GET", "HEAD") and request.path.startswith(CLIENT_PREFIX)
        if origin is None or Trust.is_same_origin(origin, host):
            response = await handler(request)
        elif request.headers.get(hdrs.UPGRADE, "").lower() == "websocket" and request.method == "GET":
            # As API Gateway: the handshake reaches $connect, where ALLOWED_ORIGINS decides.
            return await handler(request)
        elif client_module and self.trust.is_local_origin(origin):
            response = await handler(request)
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        else:
            what = (
                "only the stack's own pages may call its APIs; pages on loopback may load "
                f"the client module ({CLIENT_PREFIX}) and open WebSockets"
            )
            return self._refuse(request, Trust.origin_refusal(origin, what))
        if client_module:
            response.headers[hdrs.VARY] = "Origin"  # answered with or without CORS by Origin
        return response

    @staticmethod
    def _refuse(request: web.Request, reason: str) -> web.Response:
        logger.info("%-12s %s %s: %s", "refused", request.method, request.path, reason)
        return aws_error(403, "ForbiddenException", reason)

    def application(self) -> web.Application:
        # Bodies up to Lambda's synchronous limit are read, so that size rules answer as AWS does.
        app = web.Application(client_max_size=MAX_SYNC_PAYLOAD + 1024, middlewares=[self.guard])
        self.demo.add_routes(app.router)
        self.lambda_api.add_routes(app.router)
        if self.faults is not None:
            FaultRulesApi(self.faults).add_routes(app.router)
        self.websocket_api.add_routes(app.router)  # last: its /{stage} matches any one segment
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        logger.debug("routes ready for stage %s", self.options.stage)
        return app

    async def close_all(self, timeout: float = 10.0) -> None:
        """Close every socket and let every $disconnect and asynchronous invocation finish (bounded)."""
        await self.websocket_api.close_all()
        await self.tasks.drain(timeout)

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.close_all()

    async def _on_cleanup(self, app: web.Application) -> None:
        await self.demo.close()
