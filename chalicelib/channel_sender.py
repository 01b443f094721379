"""Sending to a channel: chunked across invocations, bounded by a deadline, failures settled.

A channel larger than ``PUSH_CHUNK_SIZE`` is split: the first chunk is posted by
the running invocation, the others are handed to the internal ``fanout``
function as ``FanOutChunk`` events. Every frame goes to every connection in
order; a connection that fails a frame gets no later one. A post that still
fails after the gateway's retries gets ``LATER_ATTEMPTS`` more tries from later
invocations carrying only the frames it has not received, then a
``delivery_failed`` frame. Posts the deadline left no time for are handed off
as a chunk too. Nothing is dropped without a word.

A connection created less than ``HANDSHAKE_GRACE_SECONDS`` ago that answers 410 may
still be in its handshake: on every attempt its item is deleted only on the
condition that it is older than that (a conditional delete on ``created_at``),
and the last attempt, which may run at once, waits the grace out before its one
more post to such a connection (then a 410 is final).

The ``fanout`` function posts only through this API's Management endpoint:
the configured ``API_GATEWAY_ENDPOINT``, or else the endpoint stored with each
connection by ``$connect``; and only to connections that are still in the
chunk's channel.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from chalicelib import protocol, wire
from chalicelib.clients import Clients
from chalicelib.deadline import Deadline
from chalicelib.internal_events import FanOutChunk
from chalicelib.model import FanOutResult, Gateway
from chalicelib.summary import elapsed_ms, note

logger = logging.getLogger(__name__)

#: A post that still fails after the gateway's own retries gets this many more tries,
#: each from a later asynchronous invocation; then the client is told.
LATER_ATTEMPTS = 1
#: How far past the work deadline (into the Lambda reserve) ``delivery_failed`` notes may go.
RESERVE_FOR_NOTES = 1.0
#: The names of this app's functions (``ws-proxy-{stage}-{name}`` once deployed).
FUNCTION_NAMES = (
    "websocket_connect",
    "websocket_message",
    "websocket_disconnect",
    "deliver",
    "push",
    "fanout",
)


def sibling_function(own_name: str | None, name: str) -> str | None:
    """``name``'s deployed name, from the running function's own (same app and stage)."""
    known = next((k for k in FUNCTION_NAMES if own_name and own_name.endswith(f"-{k}")), None)
    return own_name[: -len(known)] + name if own_name and known else None


def counts(result: FanOutResult, queued: int) -> dict[str, int]:
    """What ``push`` and ``fanout`` answer: how many posts went which way."""
    return {
        "delivered": result.delivered,
        "gone": len(result.gone),
        "failed": len(result.failed) + len(result.too_large),
        "queued": queued,
    }


def _by_frame(ids: list[str], stopped_at: dict[str, int]) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = {}
    for connection_id in ids:
        groups.setdefault(stopped_at[connection_id], []).append(connection_id)
    return groups


class ChannelSender:
    """Posts frames to the connections of one channel, handing off what is too much."""

    def __init__(self, clients: Clients, own_function_name: str | None, *, contained: bool = False) -> None:
        """Chunks go to ``FANOUT_FUNCTION_NAME``, else to the sibling of the running function.

        ``contained``: for a function that may neither invoke ``fanout`` nor read the
        connection_id index (``deliver``). It posts every chunk itself and hands nothing
        on (what fails or runs out of time is told ``delivery_failed`` at once); a
        connection found gone loses its item in this channel only (its ``$disconnect``, or
        TTL, removes the rest); one still in its handshake (410 within the grace) is skipped.
        """
        self._clients = clients
        self._settings = settings = clients.settings
        self._contained = contained
        self._chunk_function = (
            None
            if contained
            else settings.fanout_function_name or sibling_function(own_function_name, "fanout")
        )

    def remover(
        self, channel: str, young: set[str] | None = None, deadline: Deadline | None = None
    ) -> Callable[[str], None]:
        """What to do with a connection the Management API called gone (410).

        Its items go, in this channel and every other (one Query on the index), unless
        the item in this channel was created in the last ``handshake_grace`` seconds:
        API Gateway answers 410 until a handshake completes, so such a connection keeps
        every item (and is added to ``young``, when given, to be tried again). The
        conditional delete decides both: a subscription item is never older than its
        socket, so one older than the grace means the socket is too.
        """
        registry, grace = self._clients.registry, self._settings.handshake_grace_seconds

        def remove(connection_id: str) -> None:
            before = int(self._clients.clock() - grace) if grace > 0 else None
            if registry.delete(channel, connection_id, created_before=before, deadline=deadline):
                self._clients.metric("StaleRemoved", 1)
                if not self._contained:
                    # and from every other channel it is in: its own item, its subscriptions
                    registry.remove_connection(connection_id, deadline=deadline)
            elif young is not None:
                young.add(connection_id)

        return remove

    def send_to(
        self,
        channel: str,
        members: list[tuple[str, str | None]],
        frames: list[bytes],
        deadline: Deadline,
        attempt: int | None = None,
    ) -> FanOutResult:
        """``frames`` to ``members`` (id, stored endpoint) through the configured Management endpoint,
        else each one's own (stored by ``$connect``); ids with neither are left out (and logged).
        With ``attempt`` (a handed-off chunk's), every id is posted here."""
        configured, groups = self._settings.api_gateway_endpoint, dict[str, list[str]]()
        for connection_id, endpoint in members:
            if configured or endpoint:
                groups.setdefault(configured or endpoint or "", []).append(connection_id)
        if skipped := len(members) - sum(len(ids) for ids in groups.values()):
            logger.info("connections skipped: not in the channel, or no endpoint", extra={"skipped": skipped})
        total = FanOutResult()
        for endpoint, ids in groups.items():
            gateway = self._clients.gateway_for(endpoint)
            if attempt is None:
                total.merge(self.send(gateway, channel, ids, frames, deadline))
            else:
                total.merge(self.send_here(gateway, channel, ids, frames, deadline, attempt=attempt))
        return total

    def send(
        self, gateway: Gateway, channel: str, ids: list[str], frames: list[bytes], deadline: Deadline
    ) -> FanOutResult:
        """Send ``frames`` to ``ids``: the first chunk here, the rest handed off."""
        size = self._settings.push_chunk_size
        chunks = [ids[i : i + size] for i in range(0, len(ids), size)] or [[]]
        here, queued = chunks[0], 0
        for chunk in chunks[1:]:
            if self._hand_off(FanOutChunk(channel, chunk, frames), deadline):
                queued += len(chunk)
            else:  # cannot hand it off: send it here rather than lose it
                here = here + chunk
        result = self.send_here(gateway, channel, here, frames, deadline)
        counted = {"connections": len(ids), **counts(result, queued), "unsent": len(result.unsent)}
        note(
            "fanouts",
            "fan-out",
            {"channel": channel, **counted, "chunks": len(chunks), "duration_ms": result.duration_ms},
        )
        return result

    def broadcast(
        self,
        gateway: Gateway,
        channel: str,
        sender: str,
        home: str,
        own: list[bytes],
        others: list[str],
        frames: list[bytes],
        deadline: Deadline,
    ) -> FanOutResult:
        """The sender's copy (``own``, with its ``ref``) first, then ``frames`` to ``others``: one result.

        The sender's copy goes under ``home``, a channel the sender's socket has an item in (where a
        later attempt finds it: a user-level socket need not be in the booking's channel).
        """
        if own == frames and home == channel:  # every copy the same: the sender first in the first chunk
            return self.send(gateway, channel, [sender, *others], frames, deadline)
        result = self.send_here(gateway, home, [sender], own, deadline)
        result.merge(self.send(gateway, channel, others, frames, deadline))
        return result

    def send_here(
        self,
        gateway: Gateway,
        channel: str,
        ids: list[str],
        frames: list[bytes],
        deadline: Deadline,
        *,
        attempt: int = 0,
    ) -> FanOutResult:
        """Post here, then settle: failures to a later attempt (or the client is told), what had
        no time to a later chunk (or the client is told)."""
        result, stopped_at, young = self._post_all(gateway, channel, ids, frames, deadline)
        # The last attempt: young connections that answered 410 get one more post once the grace
        # is over (created_at is in whole seconds: one more makes each older than the grace).
        # Without the time to wait, they stay failed: their items are kept, their clients told.
        wait = self._settings.handshake_grace_seconds + 1
        if young and attempt >= LATER_ATTEMPTS and deadline.remaining() > wait:
            self._clients.sleep(wait)
            result.failed = [cid for cid in result.failed if cid not in young]
            for index, again in _by_frame(list(young), stopped_at).items():
                more, more_stopped_at, _ = self._post_all(gateway, channel, again, frames, deadline, index)
                result.merge(more)
                stopped_at.update(more_stopped_at)
        # handing on what is left is what the reserve past the deadline is for
        reserve = deadline.later(RESERVE_FOR_NOTES)
        lost = self._hand_on(channel, result.failed, stopped_at, frames, attempt + 1, reserve)
        out_of_time = self._hand_on(channel, result.unsent, stopped_at, frames, attempt, reserve)
        if result.unsent:
            logger.warning(
                "fan-out out of time",
                extra={"channel": channel, "handed_off": len(result.unsent) - len(out_of_time)},
            )
        if lost or out_of_time:
            self._tell_failed(gateway, channel, lost + out_of_time, deadline)
        return result

    def _post_all(
        self,
        gateway: Gateway,
        channel: str,
        ids: list[str],
        frames: list[bytes],
        deadline: Deadline,
        start: int = 0,
    ) -> tuple[FanOutResult, dict[str, int], set[str]]:
        """Every frame from ``start``, in order, to every id; one that fails a frame gets no later one.

        Also answers the index of the frame each failed or unsent id stopped at, and the young
        ones among the failed (410 while maybe still in the handshake: tried again later).
        """
        total, stopped_at, young_ones = FanOutResult(), dict[str, int](), set[str]()
        started = time.perf_counter()
        remaining = ids
        for index in range(start, len(frames)):
            if not remaining:
                break
            young: set[str] = set()
            result = gateway.post_many(
                remaining, frames[index], on_gone=self.remover(channel, young, deadline), deadline=deadline
            )
            result.gone = [i for i in result.gone if i not in young]
            if young and self._contained:  # no later attempt to hand them: skipped, kept
                logger.info("skipped connections still in their handshake", extra={"skipped": len(young)})
            elif young:
                result.failed = [*result.failed, *young]
                young_ones |= young
            total.merge(result)
            total.delivered = result.delivered  # per connection, not per frame
            stopped_at.update(dict.fromkeys([*result.failed, *result.unsent], index))
            stopped = {*result.gone, *result.failed, *result.too_large, *result.unsent, *young}
            remaining = [i for i in remaining if i not in stopped]
        total.duration_ms = elapsed_ms(started)
        self._clients.metric("FanOutSize", len(ids))
        return total, stopped_at, young_ones

    def _hand_on(
        self,
        channel: str,
        ids: list[str],
        stopped_at: dict[str, int],
        frames: list[bytes],
        attempt: int,
        deadline: Deadline,
    ) -> list[str]:
        """A chunk of the frames they lack to a later invocation, per frame they stopped at:
        answers the ids no chunk could be handed off for."""
        lost: list[str] = []
        for index, group in _by_frame(ids, stopped_at).items():
            if not self._hand_off(FanOutChunk(channel, group, frames[index:], attempt), deadline):
                lost += group
        return lost

    def _hand_off(self, chunk: FanOutChunk, deadline: Deadline) -> bool:
        """``chunk`` to the ``fanout`` function within ``deadline``; False if there is none, the
        chunk is past the last attempt, or the invoke fails."""
        if not self._chunk_function or chunk.attempt > LATER_ATTEMPTS:
            return False
        try:
            self._clients.invoker.invoke_async(self._chunk_function, chunk.to_payload(), deadline)
        except Exception as exc:  # noqa: BLE001 - any failure to hand off: deliver here or tell the client
            logger.warning(
                "chunk hand-off failed",
                extra={"channel": chunk.channel, "attempt": chunk.attempt, "error": type(exc).__name__},
            )
            return False
        return True

    def _tell_failed(self, gateway: Gateway, channel: str, ids: list[str], deadline: Deadline) -> None:
        """A ``delivery_failed`` frame to each, best effort (counted whether or not it arrives)."""
        self._clients.metric("DeliveryFailures", len(ids))
        logger.warning("delivery failed", extra={"channel": channel, "connections": len(ids)})
        note = protocol.error_frame(
            "delivery_failed",
            "a message could not be delivered to this connection; reload to catch up",
            retryable=True,
        )
        # The reserve past the deadline is for exactly this: the note may use it.
        reserve = deadline.later(RESERVE_FOR_NOTES)
        gateway.post_many(
            ids, wire.encode(note), on_gone=self.remover(channel, None, reserve), deadline=reserve
        )
