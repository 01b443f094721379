"""``push``: the backend sends a payload to a booking, a user or the feed.

The backend invokes this function with the AWS SDK. The event is validated
(``protocol.parse_push``), the channel's live connections are read, and the
payload is fanned out (to a booking: with its ``booking_id`` and ``connection_type``
added when absent), large channels in chunks handed to the internal
``fanout`` function (which the backend is not allowed to invoke). The answer counts what
happened; a bad event answers ``{"error": {...}}`` (HTTP 200 for the invoke).
"""

from __future__ import annotations

from typing import Any

from chalicelib import protocol
from chalicelib.channel_sender import ChannelSender, counts
from chalicelib.clients import Clients
from chalicelib.deadline import Deadline
from chalicelib.errors import ConfigurationError, InvalidMessage, ProxyError
from chalicelib.summary import HandlerRun

_ROUTE_OF_KIND = {"booking_id": "booking", "user_id": "notification", "feed": "feed"}


class PushCase:
    def __init__(self, clients: Clients) -> None:
        self._clients = clients

    def handle(self, event: Any, deadline: Deadline, own_function_name: str | None = None) -> dict[str, Any]:
        with HandlerRun("push") as run:
            try:
                run.result = self._push(event, deadline, own_function_name, run.log)
            except ProxyError as exc:
                code = "invalid_event" if isinstance(exc, InvalidMessage) else exc.code
                run.log["outcome"] = code
                run.result = {"error": {"code": code, "message": exc.message}}
        return run.answer()

    def _push(
        self, event: Any, deadline: Deadline, own_function_name: str | None, log: dict[str, Any]
    ) -> dict[str, Any]:
        settings = self._clients.settings
        if not settings.api_gateway_endpoint:
            raise ConfigurationError("API_GATEWAY_ENDPOINT is required for push")
        target = protocol.parse_push(event, settings.routes)
        value, connection_type = target.channel_value, target.connection_type
        # the value is the booking's or the user's id, whichever the route's channel is keyed on
        channel = settings.routes[_ROUTE_OF_KIND[target.channel_kind]].channel_for(value, value)
        members = self._clients.registry.channel_ids(channel, connection_type, deadline=deadline)
        ids = [i for i in members if i not in target.exclude]
        gateway = self._clients.gateway_for(settings.api_gateway_endpoint)
        sender = ChannelSender(self._clients, own_function_name)
        result = sender.send(gateway, channel, ids, [target.frame], deadline)
        answer = counts(result, queued=len(ids) - result.attempted)  # queued: handed to the fanout function
        log.update(answer, outcome="pushed", channel=channel, connections=len(ids))
        return answer
