"""``deliver``: a new connection's initial frames, posted once its handshake is complete.

``$connect`` runs before API Gateway completes the handshake, and the
Management API answers 410 until it has; so ``$connect`` hands the frames to
this asynchronous invocation, which retries 410 with growing pauses (at most
``DELIVER_RETRY_SECONDS`` of them in all), then posts the frames in order. It posts through the configured
endpoint, or the one ``$connect`` stored with the connection, and stops as soon
as the connection's item is gone (its ``$disconnect`` ran).
"""

from __future__ import annotations

import logging
from typing import Any

from chalicelib import protocol, wire
from chalicelib.clients import Clients
from chalicelib.deadline import Deadline
from chalicelib.errors import ProxyError
from chalicelib.internal_events import DeliveryEvent
from chalicelib.model import PostOutcome
from chalicelib.summary import HandlerRun

logger = logging.getLogger(__name__)


class DeliverCase:
    def __init__(self, clients: Clients) -> None:
        self._settings = clients.settings
        self._registry = clients.registry
        self._gateway_for = clients.gateway_for
        self._sleep = clients.sleep
        self._retry_seconds = clients.settings.deliver_retry_seconds
        self._metric = clients.metric

    def handle(self, payload: Any, deadline: Deadline) -> dict[str, Any]:
        with HandlerRun("deliver") as run:
            event = DeliveryEvent.from_payload(payload)
            run.log.update(connection_id=event.connection_id, channel=event.channel, frames=len(event.frames))
            delivered, outcome = self._deliver(event, deadline)
            run.log.update(delivered=delivered, outcome=outcome)
            run.result = {"delivered": delivered, "frames": len(event.frames), "outcome": outcome}
        return run.answer()

    def _deliver(self, event: DeliveryEvent, deadline: Deadline) -> tuple[int, str]:
        conn = self._registry.get(event.channel, event.connection_id, deadline=deadline)
        if conn is None:
            return 0, "gone"  # closed (and cleaned up) before its history could be sent
        endpoint = self._settings.api_gateway_endpoint or conn.endpoint
        if not endpoint:
            logger.error("no Management API endpoint for this connection", extra={"channel": event.channel})
            return 0, "no_endpoint"
        gateway = self._gateway_for(endpoint)
        delivered = 0
        delay, waited = 0.05, 0.0
        for frame in event.frames:
            while True:
                result = gateway.post(event.connection_id, frame, deadline=deadline)
                if (
                    result is not PostOutcome.GONE
                    or waited + delay > self._retry_seconds
                    or deadline.remaining() <= delay
                ):
                    break
                self._sleep(delay)  # 410 until API Gateway has completed the handshake
                waited += delay
                delay = min(delay * 2, 0.5)
                if self._registry.get(event.channel, event.connection_id, deadline=deadline) is None:
                    return delivered, "gone"  # its $disconnect ran: nobody is waiting
            if result is PostOutcome.DELIVERED:
                delivered += 1
                continue
            if result is PostOutcome.GONE:
                self._remove(event, deadline)
            else:
                gateway.post(
                    event.connection_id,
                    wire.encode(
                        protocol.error_frame(
                            "delivery_failed",
                            "part of the initial payload could not be delivered; reconnect",
                            retryable=True,
                        )
                    ),
                    deadline=deadline.later(1.0),
                )
                self._metric("DeliveryFailures", 1)
            return delivered, result.value
        return delivered, "delivered"

    def _remove(self, event: DeliveryEvent, deadline: Deadline) -> None:
        try:
            self._registry.delete(event.channel, event.connection_id, deadline=deadline.later(1.0))
            self._metric("StaleRemoved", 1)
        except ProxyError as exc:  # TTL removes it if we cannot
            logger.error("stale connection cleanup failed", extra={"error": exc.code})
