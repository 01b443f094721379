"""``deliver``: a new connection's initial frames, posted once its handshake is complete.

``$connect`` runs before API Gateway completes the handshake, and the
Management API answers 410 until it has; so ``$connect`` hands the frames to
this asynchronous invocation, which retries 410 with growing pauses for a few
seconds, then posts the frames in order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from chalicelib import protocol
from chalicelib.gateway import PostOutcome
from chalicelib.internal_events import DeliveryEvent
from chalicelib.ports import GatewayFor, Metric, Registry
from chalicelib.summary import HandlerRun

logger = logging.getLogger(__name__)

#: How long the deferred delivery keeps retrying 410 while the handshake completes.
DELIVER_RETRY_SECONDS = 5.0


class DeliverCase:
    def __init__(
        self,
        registry: Registry,
        gateway_for: GatewayFor,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        retry_seconds: float = DELIVER_RETRY_SECONDS,
        metric: Metric,
    ) -> None:
        self._registry = registry
        self._gateway_for = gateway_for
        self._sleep = sleep
        self._monotonic = monotonic
        self._retry_seconds = retry_seconds
        self._metric = metric

    def handle(self, payload: Any) -> dict[str, Any]:
        def fallback(outcome: str) -> dict[str, Any]:
            return {"error": {"code": outcome, "message": "the delivery could not be processed"}}

        with HandlerRun(
            "deliver", fallback, last_resort={"error": {"code": "internal_error"}}, message="deliver"
        ) as run:
            try:
                event = DeliveryEvent.from_payload(payload)
            except ValueError as exc:
                logger.error("invalid delivery event", extra={"error": str(exc)})
                run.log["outcome"] = "invalid_event"
                run.result = {"error": {"code": "invalid_event", "message": "not a delivery event"}}
                return run.answer()
            run.log.update(connection_id=event.connection_id, channel=event.channel, frames=len(event.frames))
            delivered, outcome = self._deliver(event)
            run.log.update(delivered=delivered, outcome=outcome)
            run.result = {"delivered": delivered, "frames": len(event.frames), "outcome": outcome}
        return run.answer()

    def _deliver(self, event: DeliveryEvent) -> tuple[int, str]:
        gateway = self._gateway_for(event.endpoint)
        deadline = self._monotonic() + self._retry_seconds
        delivered = 0
        delay = 0.05
        for frame in event.frames:
            while True:
                result = gateway.post(event.connection_id, frame)
                if result is not PostOutcome.GONE or self._monotonic() >= deadline:
                    break
                self._sleep(delay)  # 410 until API Gateway has completed the handshake
                delay = min(delay * 2, 0.5)
            if result is PostOutcome.DELIVERED:
                delivered += 1
                continue
            if result is PostOutcome.GONE:
                self._remove_gone(event)
            else:
                gateway.post(
                    event.connection_id,
                    protocol.encode(
                        protocol.error_frame(
                            "delivery_failed",
                            "part of the initial payload could not be delivered; reconnect",
                            retryable=True,
                        )
                    ),
                )
                self._metric("DeliveryFailures", 1)
            return delivered, result.value
        return delivered, "delivered"

    def _remove_gone(self, event: DeliveryEvent) -> None:
        """The gone connection's item goes; if DynamoDB fails, that is logged and TTL removes it."""
        try:
            self._registry.delete(event.channel, event.connection_id)
        except Exception as exc:
            logger.warning(
                "stale connection cleanup failed",
                extra={"connection_id": event.connection_id, "error": type(exc).__name__},
            )
            return
        self._metric("StaleRemoved", 1)
