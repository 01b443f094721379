"""``fanout``: the internal function that runs a ``FanOutChunk`` handed off by an earlier invocation.

It posts only through this API's Management endpoint: the configured
``API_GATEWAY_ENDPOINT``, or else the endpoint stored with each connection by
``$connect``; and, without a configured endpoint, only to connections that are
still in the chunk's channel.
"""

from __future__ import annotations

import logging
from typing import Any

from chalicelib.channel_sender import LATER_ATTEMPTS, ChannelSender
from chalicelib.clients import Clients
from chalicelib.deadline import Deadline
from chalicelib.internal_events import FanOutChunk
from chalicelib.model import FanOutResult
from chalicelib.summary import HandlerRun

logger = logging.getLogger(__name__)


class FanOutChunkCase:
    """``fanout``: runs one ``FanOutChunk`` handed off by an earlier invocation."""

    def __init__(self, clients: Clients) -> None:
        self._clients = clients
        self._settings = clients.settings
        self._registry = clients.registry
        self._gateway_for = clients.gateway_for

    def handle(
        self, payload: Any, deadline: Deadline, own_function_name: str | None = None
    ) -> dict[str, Any]:
        with HandlerRun("fanout") as run:
            chunk = FanOutChunk.from_payload(payload, max_attempt=LATER_ATTEMPTS)
            sender = ChannelSender(self._clients, own_function_name)
            total = FanOutResult()
            for endpoint, ids in self._by_endpoint(chunk, deadline).items():
                result = sender.send_here(
                    self._gateway_for(endpoint),
                    chunk.channel,
                    ids,
                    chunk.frames,
                    deadline,
                    attempt=chunk.attempt,
                )
                total.merge(result)
            run.log.update(
                outcome="delivered",
                channel=chunk.channel,
                connections=len(chunk.connection_ids),
                attempt=chunk.attempt,
                delivered=total.delivered,
                gone=len(total.gone),
                failed=len(total.failed),
                queued=len(total.unsent),
            )
            run.result = {
                "delivered": total.delivered,
                "gone": len(total.gone),
                "failed": len(total.failed) + len(total.too_large),
                "queued": len(total.unsent),
            }
        return run.answer()

    def _by_endpoint(self, chunk: FanOutChunk, deadline: Deadline) -> dict[str, list[str]]:
        """The chunk's connections by the endpoint to post through (only live ones of its channel)."""
        configured = self._settings.api_gateway_endpoint
        if configured:
            return {configured: list(chunk.connection_ids)}
        stored = self._registry.endpoints(chunk.channel, chunk.connection_ids, deadline=deadline)
        groups: dict[str, list[str]] = {}
        for cid in chunk.connection_ids:
            endpoint = stored.get(cid)
            if endpoint:
                groups.setdefault(endpoint, []).append(cid)
        missing = len(chunk.connection_ids) - sum(len(ids) for ids in groups.values())
        if missing:
            logger.info(
                "fan-out chunk skipped connections no longer in its channel", extra={"skipped": missing}
            )
        return groups
