"""``fanout``: the internal function that runs a ``FanOutChunk`` handed off by an earlier invocation.

It posts only through this API's Management endpoint: the configured
``API_GATEWAY_ENDPOINT``, or else the endpoint stored with each connection by
``$connect``; and, without a configured endpoint, only to connections that are
still in the chunk's channel.
"""

from __future__ import annotations

from typing import Any

from chalicelib.channel_sender import LATER_ATTEMPTS, ChannelSender, counts
from chalicelib.clients import Clients
from chalicelib.deadline import Deadline
from chalicelib.internal_events import FanOutChunk
from chalicelib.summary import HandlerRun


class FanOutChunkCase:
    """``fanout``: runs one ``FanOutChunk`` handed off by an earlier invocation."""

    def __init__(self, clients: Clients) -> None:
        self._clients = clients

    def handle(
        self, payload: Any, deadline: Deadline, own_function_name: str | None = None
    ) -> dict[str, Any]:
        clients = self._clients
        with HandlerRun("fanout") as run:
            chunk = FanOutChunk.from_payload(payload, max_attempt=LATER_ATTEMPTS)
            channel, ids = chunk.channel, chunk.connection_ids
            # without a configured endpoint, each one's own: only connections still in the channel have one
            configured = clients.settings.api_gateway_endpoint
            stored = {} if configured else clients.registry.endpoints(channel, ids, deadline=deadline)
            total = ChannelSender(clients, own_function_name).send_to(
                channel, [(cid, stored.get(cid)) for cid in ids], chunk.frames, deadline, chunk.attempt
            )
            run.result = answer = counts(total, queued=len(total.unsent))
            run.log.update(
                answer, outcome="delivered", channel=channel, connections=len(ids), attempt=chunk.attempt
            )
        return run.answer()
