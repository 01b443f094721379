"""One socket per user: ``subscribe``, ``unsubscribe``, ``presence`` and who a booking's broadcast reaches.

A socket that has a user may join other bookings' channels (docs/protocol.md, "One
socket per user"): ``subscribe`` asks the type's connect route for that booking with the
socket's token (the backend decides, as for a per-booking connect) and on 200 writes a
subscription item for the connection in the booking's channel, answers ``subscribed``
and then posts the answer's ``initial`` and ``receipt``, tagged with the booking.
``unsubscribe`` removes the connection from the channel (never from its own), and
``presence`` answers who is in the channel, from one Query.

A broadcast in a booking reaches the booking's channel and, when the answer names
``recipients`` (or the type's ``participants`` route does), those users' user-level
sockets: each socket once, whatever the paths, the sender's copy only to the sender.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from chalicelib import protocol, wire
from chalicelib.channel_sender import ChannelSender
from chalicelib.clients import Clients
from chalicelib.deadline import Deadline
from chalicelib.errors import Forbidden, InvalidMessage, ProxyError, TooManySubscriptions
from chalicelib.internal_events import PresenceEvent
from chalicelib.model import Connection, FanOutResult, Gateway
from chalicelib.protocol import BookingTarget
from chalicelib.routes import Route, channel_key

logger = logging.getLogger(__name__)

#: The connection type of a subscribe, unsubscribe or presence frame that names none.
DEFAULT_SUBSCRIPTION_TYPE = "chat"
#: Most users a broadcast's ``recipients`` may name (each is one Query).
MAX_RECIPIENTS = 100
#: The connection type of the user-level sockets that recipients reach.
USER_SOCKET_TYPE = "chat"

#: A frame, a backend's answer, a log record.
Json = dict[str, Any]


def with_ref(payload: dict[str, Any], ref: Any) -> dict[str, Any]:
    return payload if ref is None else {**payload, "ref": ref}


def is_user_level(conn: Connection, route: Route) -> bool:
    """A socket of a booking type opened without a booking: its own item is in its user's channel."""
    return route.needs_booking and conn.booking_id is None and conn.channel.startswith("user#")


def announce(
    clients: Clients,
    sender: ChannelSender,
    event: PresenceEvent,
    deadline: Deadline,
    gateway: Gateway | None = None,
) -> tuple[int, int]:
    """``presence_changed`` to each booking channel of ``event`` where the user's socket was the
    first to arrive (``online``) or the last to leave, one consistent Query each: the channels told
    and the posts delivered. Posted through ``gateway``, else each member's own endpoint.

    A channel is not told when the user has another socket there, when nobody else is there, or,
    for a join, when the socket is no longer there itself (it left before this ran).
    """
    announced = delivered = 0
    for booking_id, connection_type in event.channels:
        channel = channel_key("booking", booking_id)
        members = clients.registry.channel_members(channel, connection_type, deadline=deadline)
        others = [member for member in members if member.connection_id != event.connection_id]
        if event.online and len(others) == len(members):
            continue
        if not others or any(member.user_id == event.user_id for member in others):
            continue
        changed = {"booking_id": booking_id, "connection_type": connection_type, "user_id": event.user_id}
        frames = [wire.encode({"type": "presence_changed", **changed, "online": event.online})]
        if gateway is None:  # each member through its own endpoint (deliver's case)
            result = sender.send_to(
                channel, [(m.connection_id, m.endpoint) for m in others], frames, deadline
            )
        else:
            result = sender.send(gateway, channel, [m.connection_id for m in others], frames, deadline)
        announced, delivered = announced + 1, delivered + result.delivered
    return announced, delivered


@dataclass
class Subscriptions:
    """The subscription frames of one ``$default`` invocation from socket ``conn``, and a
    broadcast's recipients.

    ``subscribe``, ``unsubscribe`` and ``presence`` each take the socket's frame and its
    ``ref``, answer the socket (``subscribed``, ``unsubscribed``, ``presence``) and log
    the booking, the type and the outcome in ``log``.
    """

    clients: Clients
    sender: ChannelSender
    #: Posts one of the proxy's own frames to ``conn``.
    reply: Callable[[Json], None]
    gateway: Gateway
    conn: Connection
    deadline: Deadline
    log: Json

    def _target(self, frame: Json, *, with_since: bool = False) -> BookingTarget:
        routes = self.clients.settings.routes
        target = protocol.parse_booking_target(
            frame, routes, DEFAULT_SUBSCRIPTION_TYPE, with_since=with_since
        )
        self.log.update(booking=target.booking_id, subscription_type=target.connection_type)
        return target

    def _answer(self, target: BookingTarget, ref: Any, kind: str, **extra: Any) -> None:
        self.log["outcome"] = kind
        answer = {"type": kind, "booking_id": target.booking_id, "connection_type": target.connection_type}
        self.reply(with_ref(answer | extra, ref))

    def subscribe(self, frame: Json, ref: Any) -> None:
        conn, deadline = self.conn, self.deadline
        target = self._target(frame, with_since=True)
        if conn.user_id is None or conn.token is None:
            raise InvalidMessage("this socket has no user: subscribe on a socket opened with a token")
        path = target.route.connect_path(target.booking_id)
        if path is None:
            raise InvalidMessage(f"{target.connection_type} has no connect route to subscribe through")
        # the index is eventually consistent: what it says decides the limit and the
        # announcement, never whether to write (the write adds a type, so it may repeat)
        items = self.clients.registry.connection_items(conn.connection_id, deadline=deadline)
        there = next((item for item in items if item.channel == target.channel), None)
        limit = self.clients.settings.max_subscriptions
        if there is None and sum(1 for item in items if item.subscription) >= limit:
            raise TooManySubscriptions(
                f"a socket may subscribe to at most {limit} bookings; unsubscribe from one first"
            )
        since = {} if target.since is None else {"since": target.since}
        body = {"connection_id": conn.connection_id, "token": conn.token, **since}
        answer = self.clients.backend.post(path, body, deadline=deadline)
        user = protocol.answered_user(answer)
        if user is not None and user != conn.user_id:
            raise Forbidden("the token belongs to another user than this socket's")
        if target.channel != conn.channel:  # a subscription item
            item = replace(
                conn,
                channel=target.channel,
                connection_type=target.connection_type,
                # no token (only the socket's own item holds it); the socket's ttl: it never outlives it
                token=None,
                created_at=int(self.clients.clock()),
                booking_id=target.booking_id,
                home=conn.channel,
                types=frozenset({target.connection_type}),
            )
            self.clients.registry.subscribe(item, deadline=deadline)
        elif target.connection_type != conn.connection_type:  # its own item gains the type
            types = frozenset({conn.connection_type, target.connection_type})
            own = Connection(conn.connection_id, conn.channel, conn.connection_type, types=types)
            self.clients.registry.subscribe(own, deadline=deadline)
        self._answer(target, ref, "subscribed")
        frames = protocol.initial_frames(answer, target.booking_id, target.connection_type)
        if frames:
            self.sender.send_here(self.gateway, target.channel, [conn.connection_id], frames, deadline)
        if there is None or target.connection_type not in there.in_types:
            self._announce(target, online=True)

    def unsubscribe(self, frame: Json, ref: Any) -> None:
        conn, target = self.conn, self._target(frame)
        if target.channel == conn.channel and target.connection_type == conn.connection_type:
            raise InvalidMessage(
                "a socket cannot unsubscribe from the booking it connected to; close the socket instead"
            )
        channel, connection_type = target.channel, target.connection_type
        left = self.clients.registry.unsubscribe(
            channel, conn.connection_id, connection_type, deadline=self.deadline
        )
        self._answer(target, ref, "unsubscribed")
        if left:
            self._announce(target, online=False)

    def presence(self, frame: Json, ref: Any) -> None:
        target = self._target(frame)
        members = self.clients.registry.channel_members(
            target.channel, target.connection_type, deadline=self.deadline
        )
        if all(member.connection_id != self.conn.connection_id for member in members):
            raise Forbidden(
                f"this socket is not in booking {target.booking_id}'s channel as {target.connection_type}; "
                "subscribe first"
            )
        users = sorted({member.user_id for member in members if member.user_id is not None})
        self._answer(target, ref, "presence", users=users, connections=len(members))

    def _announce(self, target: BookingTarget, *, online: bool) -> None:
        """With ``PRESENCE_EVENTS``: ``presence_changed`` to the channel when the user's first
        socket arrived or last socket left (one Query)."""
        conn = self.conn
        if self.clients.settings.presence_events and conn.user_id is not None:
            channels = ((target.booking_id, target.connection_type),)
            event = PresenceEvent(conn.connection_id, conn.user_id, online, channels)
            announce(self.clients, self.sender, event, self.deadline, self.gateway)

    def recipients(self, answer: Json, booking_id: str, connection_type: str) -> list[str]:
        """The users whose user-level sockets a broadcast also reaches: the answer's ``recipients``,
        else the type's ``participants`` route (when configured), else none."""
        named = answer.get("recipients")
        if named is None:
            path = self.clients.settings.routes[connection_type].participants_path(booking_id)
            if path is None:
                return []
            try:
                body = {"booking_id": booking_id}
                named = self.clients.backend.post(path, body, deadline=self.deadline).get("user_ids")
            except ProxyError as exc:  # the message is stored: deliver it to the channel regardless
                logger.error("participants lookup failed", extra={"booking": booking_id, "error": exc.code})
                self.clients.metric("BackendErrors", 1)
                return []
        if not isinstance(named, list):
            logger.error("recipients is not a list; ignored", extra={"booking": booking_id})
            return []
        users = list(dict.fromkeys(user for user in map(protocol.user_id_of, named) if user is not None))
        if len(users) != len(named) or len(users) > MAX_RECIPIENTS:
            logger.warning(
                "recipients: invalid or repeated users skipped, or too many",
                extra={"booking": booking_id, "named": len(named), "kept": min(len(users), MAX_RECIPIENTS)},
            )
        return users[:MAX_RECIPIENTS]

    def send_to_users(self, users: list[str], seen: set[str], frames: list[bytes]) -> FanOutResult:
        """``frames`` to the users' user-level sockets not in ``seen`` (which gains them)."""
        total = FanOutResult()
        for user in users:
            channel = channel_key("user", user)
            members = self.clients.registry.channel_ids(channel, USER_SOCKET_TYPE, deadline=self.deadline)
            ids = [cid for cid in members if cid not in seen]
            seen.update(ids)
            if ids:
                total.merge(self.sender.send(self.gateway, channel, ids, frames, self.deadline))
        return total
