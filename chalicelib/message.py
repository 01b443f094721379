"""``$default``: a client frame, answered by the proxy or forwarded to the backend.

The proxy answers three kinds of frame itself: bad frames (an error frame),
``{"type": "ping"}`` (``pong``) and ``{"type": "auth", "token"}`` (the token is
checked by the type's backend connect route and replaces the stored one).
``subscribe``, ``unsubscribe`` and ``presence`` go to ``subscriptions.py``. Any
other frame goes, with the connection's stored token, to the type's backend
message route (a frame naming ``booking_id``: that booking's); the answer goes
back to the sender, or with ``broadcast: true`` to every connection of the
channel with the same type and to the users it names as ``recipients``. Frames
from a booking's channel carry its ``booking_id`` and ``connection_type``.

A frame with an ``id`` gets exactly one frame back carrying ``"ref": id``: the
reply, the sender's own copy of a broadcast, the pong, ``authenticated``, or
an error frame. Other recipients' copies carry no ``ref``.
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent

from chalicelib import protocol, wire
from chalicelib.channel_sender import RESERVE_FOR_NOTES, ChannelSender
from chalicelib.clients import Clients
from chalicelib.deadline import Deadline
from chalicelib.errors import (
    BackendUnavailable,
    DeliveryFailed,
    Forbidden,
    InvalidMessage,
    ProxyError,
    TooLarge,
    Unauthorized,
    UnknownConnection,
)
from chalicelib.model import Connection, Gateway, PostOutcome
from chalicelib.routes import Route, is_channel_key
from chalicelib.subscriptions import DEFAULT_SUBSCRIPTION_TYPE, Subscriptions, is_user_level, with_ref
from chalicelib.summary import HandlerRun

logger = logging.getLogger(__name__)

_UNDELIVERED = "the message was accepted but could not be delivered to everyone; do not resend it"

#: What the sender is told when the work raised (``HandlerRun`` passes one of these outcomes).
_FALLBACK_MESSAGES = {
    "misconfigured": ("the proxy is misconfigured", False),
    "internal_error": ("the message could not be processed; try again", True),
}


class MessageCase:
    def __init__(self, clients: Clients) -> None:
        self._clients = clients

    def handle(
        self, event: APIGatewayWebSocketEvent, deadline: Deadline, own_function_name: str | None = None
    ) -> dict[str, Any]:
        turn = _Turn(self._clients, deadline, own_function_name)
        with HandlerRun("$default", on_failure=turn.fail, last_resort={"statusCode": 200}) as run:
            turn.log = run.log
            run.result = turn.run(event)
        return run.answer()


class _Turn:
    """One frame from one socket: where its answers go (``gateway``, ``ref``) and its summary ``log``."""

    def __init__(self, clients: Clients, deadline: Deadline, own_function_name: str | None) -> None:
        self.clients, self.settings, self.registry = clients, clients.settings, clients.registry
        self.deadline, self.sender = deadline, ChannelSender(clients, own_function_name)
        self.log: dict[str, Any] = {}
        self.gateway: Gateway | None = None
        self.connection_id = ""
        #: What error frames echo: ``id`` or (older clients) ``client_id``; answers echo ``id`` only.
        self.ref: Any = None
        #: The backend has accepted the frame: a resend would store it twice.
        self.accepted = False

    def run(self, event: APIGatewayWebSocketEvent) -> dict[str, Any]:
        context = event.request_context
        self.connection_id = self.log["connection_id"] = context.connection_id
        gateway = self.gateway = self.clients.gateway_for(
            self.settings.endpoint_for(context.domain_name, context.stage)
        )
        try:
            frame = protocol.parse_frame(event.body, is_base64=event.is_base64_encoded)
            self.ref, request, kind = protocol.reference(frame), protocol.request_id(frame), frame.get("type")
            if kind == "ping":
                self.log["outcome"] = "pong"
                self.reply(with_ref(protocol.PONG, request))
            elif kind == "auth":
                self._authenticate(frame, request)
            else:
                # presence and unsubscribe send no token: they skip its read
                conn, route = self._sender(token=kind not in ("presence", "unsubscribe"))
                subscriptions = Subscriptions(
                    self.clients, self.sender, self.reply, gateway, conn, self.deadline, self.log
                )
                if route.connect is not None and kind in ("subscribe", "unsubscribe", "presence"):
                    getattr(subscriptions, kind)(frame, request)
                else:
                    self._forward(subscriptions, route, frame, request)
            self.clients.metric("Messages", 1)
        except ProxyError as exc:
            self.log["outcome"] = exc.code
            if exc.code in ("backend_unavailable", "backend_error"):
                self.clients.metric("BackendErrors", 1)
            self.reply(protocol.error_frame_for(exc, self.ref))
        return {"statusCode": 200}

    def fail(self, outcome: str) -> dict[str, Any]:
        """When the work raised (``misconfigured``, ``internal_error``): the sender is told, if it can be
        (after the backend accepted the frame: not to resend it)."""
        if self.gateway is None:
            return {"statusCode": 500}
        if self.accepted:
            self.reply(protocol.error_frame_for(DeliveryFailed(_UNDELIVERED), self.ref))
            return {"statusCode": 200}
        message, retryable = _FALLBACK_MESSAGES[outcome]
        self.reply(protocol.error_frame("backend_unavailable", message, retryable=retryable, ref=self.ref))
        return {"statusCode": 200}

    def _sender(self, *, token: bool = True) -> tuple[Connection, Route]:
        """The sending socket (its own item, with the token stored now unless ``token=False``)."""
        conn = self.registry.find(self.connection_id, token=token, deadline=self.deadline)
        if conn is None:
            raise UnknownConnection("this connection is not registered; reconnect")
        route = self.settings.routes.get(conn.connection_type)
        if route is None:
            raise UnknownConnection("this connection's type is no longer served; reconnect")
        legacy = not is_channel_key(conn.channel)
        if legacy or (route.needs_booking and not conn.booking_id and not is_user_level(conn, route)):
            # Written by an earlier version (channel without a kind): its channel cannot be trusted.
            self.registry.delete(conn.channel, conn.connection_id, deadline=self.deadline)
            raise UnknownConnection("this connection was opened by an earlier version; reconnect")
        self.log.update(channel=conn.channel, type=conn.connection_type)
        return conn, route

    def _authenticate(self, frame: dict[str, Any], request: Any) -> None:
        token = frame.get("token")
        if not isinstance(token, str) or not token:
            raise InvalidMessage("auth needs a token: a non-empty string")
        if len(token) > protocol.MAX_TOKEN_CHARS:
            raise Unauthorized("token is too long")
        conn, route = self._sender()
        path = route.user_connect if is_user_level(conn, route) else route.connect_path(conn.booking_id)
        if path is None:
            raise InvalidMessage(f"{conn.connection_type} connections take no token")
        if conn.token is None:  # accepted before its type took tokens: it never gets one
            raise UnknownConnection("this connection was opened without a token; reconnect with one")
        body = {"connection_id": self.connection_id, "token": token}
        answer = self.clients.backend.post(path, body, deadline=self.deadline)
        if protocol.answered_user(answer) != conn.user_id:
            raise Forbidden("the token belongs to another user; reconnect with it instead")
        self.registry.update_token(conn, token, deadline=self.deadline)
        self.log["outcome"] = "authenticated"
        self.reply(with_ref({"type": "authenticated"}, request))

    def _destination(
        self, conn: Connection, route: Route, frame: dict[str, Any]
    ) -> tuple[str, str, str, str | None]:
        """Where a frame goes: (message path, channel, connection type, booking).

        A frame naming ``booking_id`` (on a socket with a token) goes to that booking's message
        route for its ``connection_type`` (else the socket's booking type, else chat); any other
        frame goes where the socket belongs.
        """
        if "booking_id" in frame and route.connect is not None:
            default = conn.connection_type if route.needs_booking else DEFAULT_SUBSCRIPTION_TYPE
            target = protocol.parse_booking_target(frame, self.settings.routes, default)
            path = target.route.message_path(target.booking_id)
            return path, target.channel, target.connection_type, target.booking_id
        if is_user_level(conn, route):
            raise InvalidMessage(
                "booking_id required: this socket is the user's, name the booking in each frame"
            )
        return route.message_path(conn.booking_id), conn.channel, conn.connection_type, conn.booking_id

    def _forward(
        self, subscriptions: Subscriptions, route: Route, frame: dict[str, Any], request: Any
    ) -> None:
        conn, gateway = subscriptions.conn, subscriptions.gateway
        connection_id, deadline, log, sender = conn.connection_id, self.deadline, self.log, self.sender
        path, channel, connection_type, booking = self._destination(conn, route, frame)
        if channel != conn.channel:
            log.update(booking=booking, subscription_type=connection_type)
        body: dict[str, Any] = {"connection_id": connection_id, "message": frame}
        if conn.token is not None:
            body["token"] = conn.token
        answer = self.clients.backend.post(path, body, deadline=deadline)
        self.accepted = True
        broadcast = answer.get("broadcast") is True
        payload = {key: value for key, value in answer.items() if key != "recipients"}
        if booking is not None:
            payload = protocol.tagged(payload, booking, connection_type)
        own = wire.frames_for(payload, ref=request)
        try:
            if broadcast:
                users = [] if booking is None else subscriptions.recipients(answer, booking, connection_type)
                others: list[str] = []
                others_frames = own if request is None else wire.frames_for(payload)
                home = conn.channel  # the sender's copy goes where its socket has an item
                try:
                    for member in self.registry.channel_ids(channel, connection_type, deadline=deadline):
                        if member != connection_id:
                            others.append(member)
                        else:  # in this channel too: one fan-out carries every copy
                            home = channel
                except BackendUnavailable:
                    # The channel could not be read in time: the members found so far get the
                    # message (handed off if no time is left), the sender is told (below).
                    if others:
                        sender.send(gateway, channel, others, others_frames, deadline)
                    raise
                result = sender.broadcast(
                    gateway, channel, connection_id, home, own, others, others_frames, deadline
                )
                if users:  # each socket once: the channel's and the sender are already served
                    result.merge(subscriptions.send_to_users(users, {connection_id, *others}, others_frames))
            else:
                result = sender.send_here(gateway, conn.channel, [connection_id], own, deadline)
        except BackendUnavailable as exc:
            # The backend has accepted the message: resending it would store it twice.
            raise DeliveryFailed(_UNDELIVERED) from exc
        log.update(
            outcome="broadcast" if broadcast else "replied",
            delivered=result.delivered,
            gone=len(result.gone),
            failed=len(result.failed),
            unsent=len(result.unsent),
        )
        if connection_id in result.too_large:
            raise TooLarge("the reply is over the message limit")

    def reply(self, frame: dict[str, Any]) -> None:
        """One of the proxy's own frames (pong, authenticated, error) to the sender, best effort."""
        if self.gateway is None:
            return
        # within the handler's time and its reserve for notes: a slow Management API cannot hold it
        outcome = self.gateway.post(
            self.connection_id, wire.encode(frame), deadline=self.deadline.later(RESERVE_FOR_NOTES)
        )
        if outcome in (PostOutcome.FAILED, PostOutcome.TOO_LARGE):
            logger.warning(
                "proxy frame refused", extra={"connection_id": self.connection_id, "error": outcome.value}
            )
            self.clients.metric("DeliveryFailures", 1)
