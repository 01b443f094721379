"""``$default``: a client frame, answered by the proxy or forwarded to the backend.

Pings and bad frames are answered here. Any other frame goes, with the
connection's stored token, to the type's backend message route; the answer goes
back to the sender, or with ``broadcast: true`` to every connection of the
channel with the same type. Every failure is one error frame to the sender.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from chalicelib import protocol
from chalicelib.config import Settings
from chalicelib.errors import BackendUnavailable, DeliveryFailed, ProxyError, TooLarge, UnknownConnection
from chalicelib.fanout import FanOut
from chalicelib.gateway import FanOutResult, PostOutcome
from chalicelib.ports import Backend, Gateway, GatewayFor, Metric, Registry
from chalicelib.registry import Connection
from chalicelib.summary import HandlerRun

logger = logging.getLogger(__name__)

_FALLBACK_MESSAGES = {
    "misconfigured": ("the proxy is misconfigured", False),
    "internal_error": ("the message could not be processed; try again", True),
}


class MessageCase:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        backend: Backend,
        gateway_for: GatewayFor,
        fan_out: FanOut,
        *,
        metric: Metric,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._backend = backend
        self._gateway_for = gateway_for
        self._fan_out = fan_out
        self._metric = metric

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        ctx = event.get("requestContext") or {}
        connection_id = str(ctx.get("connectionId", ""))
        ref: Any = None
        gateway: Gateway | None = None

        def fallback(outcome: str) -> dict[str, Any]:
            message, retryable = _FALLBACK_MESSAGES.get(outcome, _FALLBACK_MESSAGES["internal_error"])
            if gateway is None:
                return {"statusCode": 500}
            self._reply(
                gateway,
                connection_id,
                protocol.error_frame("backend_unavailable", message, retryable=retryable, ref=ref),
            )
            return {"statusCode": 200}

        with HandlerRun(
            "$default",
            fallback,
            last_resort={"statusCode": 200},
            message="message",
            connection_id=connection_id,
        ) as run:
            gateway = self._gateway_for(self._settings.endpoint_for(ctx))
            run.result = {"statusCode": 200}
            try:
                frame = protocol.parse_frame(event.get("body"), is_base64=bool(event.get("isBase64Encoded")))
                ref = protocol.reference(frame)
                if protocol.is_ping(frame):
                    run.log["outcome"] = "pong"
                    self._reply(gateway, connection_id, protocol.PONG)
                else:
                    self._forward(gateway, connection_id, frame, run.log)
                self._metric("Messages", 1)
            except ProxyError as exc:
                run.log["outcome"] = exc.code
                if exc.code in ("backend_unavailable", "backend_error"):
                    self._metric("BackendErrors", 1)
                self._reply(gateway, connection_id, protocol.error_frame_for(exc, ref))
        return run.answer()

    def _forward(
        self, gateway: Gateway, connection_id: str, frame: dict[str, Any], log: dict[str, Any]
    ) -> None:
        conn = self._registry.find(connection_id)
        if conn is None:
            raise UnknownConnection("this connection is not registered; reconnect")
        route = self._settings.routes.get(conn.connection_type)
        if route is None:
            raise UnknownConnection("this connection's type is no longer served; reconnect")
        log.update(channel=conn.channel, type=conn.connection_type)
        body: dict[str, Any] = {"connection_id": connection_id, "message": frame}
        if conn.token is not None:
            body["token"] = conn.token
        booking_id = conn.channel if route.needs_booking else None
        answer = self._backend.post(route.message_path(booking_id), body)
        frames = protocol.frames_for(answer)
        broadcast = answer.get("broadcast") is True
        try:
            if broadcast:
                result = self._broadcast(gateway, conn, frames)
            else:
                result = self._fan_out.to_channel(gateway, conn.channel, [connection_id], frames)
        except BackendUnavailable as exc:
            # The backend has accepted the message: resending it would store it twice.
            raise DeliveryFailed(
                "the message was accepted but could not be delivered to everyone; do not resend it"
            ) from exc
        log.update(
            outcome="broadcast" if broadcast else "replied",
            delivered=result.delivered,
            gone=len(result.gone),
            failed=len(result.failed),
        )
        if connection_id in result.too_large:
            raise TooLarge("the reply is over the message limit")

    def _reply(self, gateway: Gateway, connection_id: str, frame: dict[str, Any]) -> None:
        """One of the proxy's own frames (pong, error) to the sender, best effort."""
        outcome = gateway.post(connection_id, protocol.encode(frame))
        if outcome in (PostOutcome.FAILED, PostOutcome.TOO_LARGE):
            logger.warning(
                "proxy frame refused", extra={"connection_id": connection_id, "error": outcome.value}
            )
            self._metric("DeliveryFailures", 1)

    def _broadcast(self, gateway: Gateway, sender: Connection, frames: list[bytes]) -> FanOutResult:
        ids = list(self._registry.channel_ids(sender.channel, sender.connection_type))
        if sender.connection_id in ids:  # the sender's own chunk is the first
            ids.remove(sender.connection_id)
            ids.insert(0, sender.connection_id)
        return self._fan_out.to_channel(gateway, sender.channel, ids, frames)
