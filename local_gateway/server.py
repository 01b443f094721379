"""The gateway's one port: the APIs it emulates and the demo page, put together.

- ``websocket_api``: the WebSocket API and the Management API (they share the sockets);
- ``lambda_api``: the Lambda Invoke API for ``deliver``, ``push`` and ``fanout``;
- ``faults``: ``/_local/faults``, only with fault injection on (a test facility);
- ``demo``: the demo page, its files and its same-origin calls to the backend.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web

from local_gateway.demo import DemoSite
from local_gateway.faults import FaultRulesApi, ManagementFaults
from local_gateway.lambda_api import MAX_SYNC_PAYLOAD, LambdaInvokeApi
from local_gateway.runtime import AppRuntime
from local_gateway.tasks import BackgroundTasks
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

    def application(self) -> web.Application:
        # Bodies up to Lambda's synchronous limit are read, so that size rules answer as AWS does.
        app = web.Application(client_max_size=MAX_SYNC_PAYLOAD + 1024)
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
