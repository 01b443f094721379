"""``$connect`` and ``$disconnect``: a connection's item is written and removed here.

``$connect`` validates the query, asks the type's backend connect route, writes
the item only when the backend accepts, and hands the initial frames to
``deliver`` (API Gateway refuses posts until the handshake has completed).
``$disconnect`` removes every item of the connection (its own and its
subscriptions); TTL removes whatever a missed one leaves.

With ``PRESENCE_EVENTS``, both hand the booking channels the socket joined or left
to ``deliver`` (a ``PresenceEvent``, asynchronously): neither may read a channel or
post, and a socket in its handshake cannot be posted to. Best effort: a hand-off that
fails is logged and changes nothing else.
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent

from chalicelib import errors, protocol, wire
from chalicelib.clients import Clients
from chalicelib.deadline import Deadline
from chalicelib.internal_events import ASYNC_PAYLOAD_LIMIT, DeliveryEvent, PresenceEvent, pack_frames
from chalicelib.model import Connection
from chalicelib.routes import channel_key
from chalicelib.summary import HandlerRun

logger = logging.getLogger(__name__)

#: Longest Management API endpoint stored with a connection.
ENDPOINT_MAX = 512
#: How long after its handshake a socket's items may still be missing from the connection_id
#: index (DynamoDB updates it eventually): a ``$disconnect`` that finds none asks again only
#: within this time.
INDEX_LAG_SECONDS = 60


def hand_presence(
    clients: Clients, items: list[Connection], log: dict[str, Any], deadline: Deadline | None, *, online: bool
) -> None:
    """With ``PRESENCE_EVENTS``: the socket's arrival in (or departure from) the booking channels
    and types its items are in, to ``deliver``, which announces it; ``log["presence"]`` says how
    that went, if there was any."""
    settings = clients.settings
    user = next((item.user_id for item in items if item.user_id is not None), None)
    channels = tuple(
        (item.booking_id, connection_type)
        for item in items
        if item.booking_id is not None and item.channel == channel_key("booking", item.booking_id)
        for connection_type in sorted(item.in_types)
    )
    if not settings.presence_events or user is None or not channels:
        return
    connection_id, name = items[0].connection_id, settings.deliver_function_name
    log["presence"] = "failed"
    if not name:
        logger.error("DELIVER_FUNCTION_NAME is required for PRESENCE_EVENTS")
        return
    try:
        event = PresenceEvent(connection_id, user, online, channels)
        clients.invoker.invoke_async(name, event.to_payload(), deadline)
        log["presence"] = "handed"
    except Exception as exc:  # noqa: BLE001 - best effort: the socket's own work is done
        logger.error(
            "presence could not be handed to deliver",
            extra={"connection_id": connection_id, "error": type(exc).__name__},
        )


def _refused(outcome: str) -> dict[str, Any]:
    """``$connect`` when its work raised: the handshake is refused with 500."""
    reason = "the proxy is misconfigured" if outcome == "misconfigured" else "internal error"
    return {"statusCode": 500, "body": reason}


class ConnectCase:
    def __init__(self, clients: Clients) -> None:
        self._clients = clients
        self._settings = clients.settings

    def handle(self, event: APIGatewayWebSocketEvent, deadline: Deadline) -> dict[str, Any]:
        with HandlerRun("$connect", on_failure=_refused) as run:
            try:
                run.result = self._connect(event, deadline, run.log)
                run.log["outcome"] = "accepted"
                self._clients.metric("ConnectionsOpened", 1)
            except errors.ProxyError as exc:
                run.log["outcome"] = exc.code
                run.result = {"statusCode": exc.status, "body": exc.message}
                self._clients.metric("ConnectionsRejected", 1)
                if exc.code in ("backend_unavailable", "backend_error"):
                    self._clients.metric("BackendErrors", 1)
        return run.answer()

    def _connect(
        self, event: APIGatewayWebSocketEvent, deadline: Deadline, log: dict[str, Any]
    ) -> dict[str, Any]:
        settings, registry = self._settings, self._clients.registry
        context = event.request_context
        connection_id = log["connection_id"] = context.connection_id
        protocol.check_origin(event.headers, settings.allowed_origins)
        # the query as sent: its names are case-sensitive, unlike the headers'
        request = protocol.parse_connect(event.get("queryStringParameters"), event.headers, settings.routes)
        log["type"] = request.connection_type
        endpoint = settings.endpoint_for(context.domain_name, context.stage)
        if len(endpoint) > ENDPOINT_MAX:
            raise errors.InvalidMessage("the request's domain name is too long", status=400)
        cap = settings.max_feed_connections
        # with MAX_FEED_CONNECTIONS, a feed that has that many connections takes no more
        if (
            request.route.channel_kind == "feed"
            and cap
            and registry.count(channel_key("feed"), cap, deadline=deadline) >= cap
        ):
            raise errors.ChannelFull(f"the feed has its maximum of {cap} connections; try again later")
        answer: dict[str, Any] = {}
        path = request.connect_path()
        if path is not None:
            since = {} if request.since is None else {"since": request.since}
            body = {"connection_id": connection_id, "token": request.token, **since}
            answer = self._clients.backend.post(path, body, deadline=deadline)
        user = protocol.answered_user(answer)
        if (request.route.channel_kind == "user" or request.user_level) and user is None:
            raise errors.BackendError("the chat service did not say which user connected")
        channel = request.channel(user)
        log["channel"] = channel
        frames = protocol.initial_frames(answer, request.booking_id, request.connection_type)
        now = int(self._clients.clock())
        conn = Connection(
            connection_id=connection_id,
            channel=channel,
            connection_type=request.connection_type,
            user_id=user,
            # Only a token the backend has verified is stored (and forwarded with messages).
            token=request.token if path is not None else None,
            created_at=now,
            ttl=now + settings.connection_ttl_seconds,
            booking_id=request.booking_id,
            endpoint=endpoint,
        )
        registry.put(conn, deadline=deadline)
        if frames:
            try:
                self._schedule_delivery(conn, frames, deadline)
            except Exception:
                # the rollback may use the time kept back from the deadline
                registry.delete(channel, connection_id, deadline=deadline.later(1.0))
                raise
        hand_presence(self._clients, [conn], log, deadline, online=True)
        if request.bearer_subprotocol:
            return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": protocol.BEARER_SUBPROTOCOL}}
        return {"statusCode": 200}

    def _schedule_delivery(self, conn: Connection, frames: list[bytes], deadline: Deadline) -> None:
        name = self._settings.deliver_function_name
        if not name:
            raise errors.ConfigurationError("DELIVER_FUNCTION_NAME is required to deliver initial payloads")
        if len(pack_frames(frames)) > ASYNC_PAYLOAD_LIMIT:
            # Too large even compressed: say so to the client instead of dropping it.
            note = protocol.error_frame(
                "too_large", "the initial payload is too large to deliver; reload in smaller pages"
            )
            frames = [wire.encode(note)]
        try:
            self._clients.invoker.invoke_async(
                name, DeliveryEvent(conn.connection_id, conn.channel, frames).to_payload(), deadline
            )
        except Exception as exc:
            logger.error(
                "deferred delivery could not be scheduled",
                extra={"connection_id": conn.connection_id, "error": type(exc).__name__},
            )
            raise errors.DeliveryFailed("the chat history could not be scheduled; reconnect") from exc


class DisconnectCase:
    def __init__(self, clients: Clients) -> None:
        self._clients = clients

    def handle(self, event: APIGatewayWebSocketEvent, deadline: Deadline | None = None) -> dict[str, Any]:
        registry = self._clients.registry
        with HandlerRun("$disconnect", on_failure=lambda _: {"statusCode": 200}) as run:
            run.result = {"statusCode": 200}
            connection_id = run.log["connection_id"] = event.request_context.connection_id
            connected_at = event["requestContext"].get("connectedAt")  # epoch milliseconds
            age = self._clients.clock() - connected_at / 1000 if isinstance(connected_at, int) else 0
            try:
                # every item of the connection: its own and its subscriptions, in batches
                removed = registry.remove_connection(connection_id, deadline=deadline)
                if (
                    not removed
                    and age < INDEX_LAG_SECONDS
                    and registry.find(connection_id, token=False, deadline=deadline)
                ):
                    # a socket that has just connected: the index caught up
                    removed = registry.remove_connection(connection_id, deadline=deadline)
                run.log["outcome"] = "removed" if removed else "unknown"
                if removed:
                    home = next((conn for conn in removed if not conn.subscription), None)
                    run.log["channel"] = home.channel if home else None
                    run.log["subscriptions"] = sum(1 for conn in removed if conn.subscription)
                    self._clients.metric("ConnectionsClosed", 1)
                    hand_presence(self._clients, removed, run.log, deadline, online=False)
            except errors.ProxyError as exc:  # best effort: TTL removes what we could not
                run.log["outcome"] = "error"
                logger.error("disconnect cleanup failed", extra={**run.log, "error": exc.code})
        return run.answer()
