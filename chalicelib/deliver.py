"""``deliver``: a new connection's initial frames, posted once its handshake is complete.

``$connect`` runs before API Gateway completes the handshake, and the
Management API answers 410 until it has; so ``$connect`` hands the frames to
this asynchronous invocation, which retries 410 with growing pauses (at most
``DELIVER_RETRY_SECONDS`` of them in all), then posts the frames in order. It posts through the configured
endpoint, or the one ``$connect`` stored with the connection, and stops as soon
as the connection's item is gone (its ``$disconnect`` ran).

With ``PRESENCE_EVENTS``, ``$connect`` and ``$disconnect`` (which may neither read a
channel nor post) also hand it a ``PresenceEvent``: for each booking channel the socket
joined or left, one consistent Query of the channel tells whether it was the user's
first socket there (or last), and if so the others get ``presence_changed`` through
the channel sender, contained (this function hands nothing to ``fanout``).
"""

from __future__ import annotations

import logging
from typing import Any

from chalicelib import protocol, wire
from chalicelib.channel_sender import ChannelSender
from chalicelib.clients import Clients
from chalicelib.deadline import Deadline
from chalicelib.errors import ProxyError
from chalicelib.internal_events import DeliveryEvent, PresenceEvent
from chalicelib.model import PostOutcome
from chalicelib.subscriptions import announce
from chalicelib.summary import HandlerRun

logger = logging.getLogger(__name__)


class DeliverCase:
    def __init__(self, clients: Clients) -> None:
        self._clients = clients
        self._settings = clients.settings
        self._registry = clients.registry

    def handle(self, payload: Any, deadline: Deadline) -> dict[str, Any]:
        with HandlerRun("deliver") as run:
            if isinstance(payload, dict) and "presence" in payload:
                run.result = self._announce(payload, deadline, run.log)
                return run.answer()
            event = DeliveryEvent.from_payload(payload)
            run.log.update(connection_id=event.connection_id, channel=event.channel, frames=len(event.frames))
            delivered, outcome = self._deliver(event, deadline)
            run.log.update(delivered=delivered, outcome=outcome)
            run.result = {"delivered": delivered, "frames": len(event.frames), "outcome": outcome}
        return run.answer()

    def _deliver(self, event: DeliveryEvent, deadline: Deadline) -> tuple[int, str]:
        channel, connection_id = event.channel, event.connection_id
        conn = self._registry.get(channel, connection_id, deadline=deadline)
        if conn is None:
            return 0, "gone"  # closed (and cleaned up) before its history could be sent
        endpoint = self._settings.api_gateway_endpoint or conn.endpoint
        if not endpoint:
            logger.error("no Management API endpoint for this connection", extra={"channel": channel})
            return 0, "no_endpoint"
        gateway = self._clients.gateway_for(endpoint)
        delivered, delay, waited = 0, 0.05, 0.0
        for frame in event.frames:
            result = gateway.post(connection_id, frame, deadline=deadline)
            while (
                result is PostOutcome.GONE
                and waited + delay <= self._settings.deliver_retry_seconds
                and deadline.remaining() > delay
            ):
                self._clients.sleep(delay)  # 410 until API Gateway has completed the handshake
                waited, delay = waited + delay, min(delay * 2, 0.5)
                if self._registry.get(channel, connection_id, deadline=deadline) is None:
                    return delivered, "gone"  # its $disconnect ran: nobody is waiting
                result = gateway.post(connection_id, frame, deadline=deadline)
            if result is not PostOutcome.DELIVERED:
                break
            delivered += 1
        else:
            return delivered, "delivered"
        if result is PostOutcome.GONE:
            try:
                self._registry.delete(channel, connection_id, deadline=deadline.later(1.0))
                self._clients.metric("StaleRemoved", 1)
            except ProxyError as exc:  # TTL removes it if we cannot
                logger.error("stale connection cleanup failed", extra={"error": exc.code})
        else:
            note = protocol.error_frame(
                "delivery_failed",
                "part of the initial payload could not be delivered; reconnect",
                retryable=True,
            )
            gateway.post(connection_id, wire.encode(note), deadline=deadline.later(1.0))
            self._clients.metric("DeliveryFailures", 1)
        return delivered, result.value

    def _announce(self, payload: Any, deadline: Deadline, log: dict[str, Any]) -> dict[str, Any]:
        """A ``PresenceEvent``: ``presence_changed`` to each channel where the user's first socket
        arrived or last socket left (one Query per channel and type)."""
        booking_types = [name for name, route in self._settings.routes.items() if route.needs_booking]
        event = PresenceEvent.from_payload(payload, booking_types=booking_types)
        log.update(connection_id=event.connection_id, online=event.online, channels=len(event.channels))
        if not self._settings.presence_events:  # turned off since the event was sent
            log["outcome"] = "off"
            return {"announced": 0, "outcome": "off"}
        sender = ChannelSender(self._clients, None, contained=True)
        announced, delivered = announce(self._clients, sender, event, deadline)
        log.update(outcome="presence", announced=announced, delivered=delivered)
        return {"announced": announced, "delivered": delivered, "outcome": "presence"}
