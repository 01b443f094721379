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
from chalicelib.model import Member, PostOutcome
from chalicelib.routes import channel_key
from chalicelib.subscriptions import presence_change
from chalicelib.summary import HandlerRun

logger = logging.getLogger(__name__)


class DeliverCase:
    def __init__(self, clients: Clients) -> None:
        self._clients = clients
        self._settings = clients.settings
        self._registry = clients.registry
        self._gateway_for = clients.gateway_for
        self._sleep = clients.sleep
        self._retry_seconds = clients.settings.deliver_retry_seconds
        self._metric = clients.metric

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
        announced = delivered = 0
        for booking_id, connection_type in event.channels:
            change = presence_change(
                self._registry,
                event.connection_id,
                event.user_id,
                booking_id,
                connection_type,
                online=event.online,
                deadline=deadline,
            )
            if change is None:
                continue
            others, frame = change
            announced += 1
            channel = channel_key("booking", booking_id)
            for endpoint, ids in self._by_endpoint(others).items():
                delivered += sender.send(
                    self._gateway_for(endpoint), channel, ids, [frame], deadline
                ).delivered
        log.update(outcome="presence", announced=announced, delivered=delivered)
        return {"announced": announced, "delivered": delivered, "outcome": "presence"}

    def _by_endpoint(self, members: list[Member]) -> dict[str, list[str]]:
        """The members by the endpoint to post through: the configured one, else each one's own."""
        configured = self._settings.api_gateway_endpoint
        groups: dict[str, list[str]] = {}
        for member in members:
            endpoint = configured or member.endpoint
            if endpoint:
                groups.setdefault(endpoint, []).append(member.connection_id)
        skipped = len(members) - sum(len(ids) for ids in groups.values())
        if skipped:
            logger.warning("presence: connections without an endpoint skipped", extra={"skipped": skipped})
        return groups

    def _remove(self, event: DeliveryEvent, deadline: Deadline) -> None:
        try:
            self._registry.delete(event.channel, event.connection_id, deadline=deadline.later(1.0))
            self._metric("StaleRemoved", 1)
        except ProxyError as exc:  # TTL removes it if we cannot
            logger.error("stale connection cleanup failed", extra={"error": exc.code})
