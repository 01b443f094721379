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
    if not own_name:
        return None
    for known in FUNCTION_NAMES:
        if own_name.endswith(f"-{known}"):
            return own_name[: -len(known)] + name
    return None


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
        settings = clients.settings
        self._registry = clients.registry
        self._invoker = clients.invoker
        self._chunk_size = settings.push_chunk_size
        self._contained = contained
        self._chunk_function = (
            None
            if contained
            else settings.fanout_function_name or sibling_function(own_function_name, "fanout")
        )
        self._metric = clients.metric
        self._clock = clients.clock
        self._sleep = clients.sleep
        self._handshake_grace = settings.handshake_grace_seconds

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

        def remove(connection_id: str) -> None:
            grace = self._handshake_grace
            before = int(self._clock() - grace) if grace > 0 else None
            if self._registry.delete(channel, connection_id, created_before=before, deadline=deadline):
                self._metric("StaleRemoved", 1)
                if not self._contained:
                    # and from every other channel it is in: its own item, its subscriptions
                    self._registry.remove_connection(connection_id, deadline=deadline)
            elif young is not None:
                young.add(connection_id)

        return remove

    def send(
        self, gateway: Gateway, channel: str, ids: list[str], frames: list[bytes], deadline: Deadline
    ) -> FanOutResult:
        """Send ``frames`` to ``ids``: the first chunk here, the rest handed off."""
        size = self._chunk_size
        chunks = [ids[i : i + size] for i in range(0, len(ids), size)] or [[]]
        queued = 0
        for chunk in chunks[1:]:
            if self._hand_off(FanOutChunk(channel, chunk, frames)):
                queued += len(chunk)
            else:  # cannot hand it off: send it here rather than lose it
                chunks[0] = chunks[0] + chunk
        result = self.send_here(gateway, channel, chunks[0], frames, deadline, attempt=0)
        note(
            "fanouts",
            "fan-out",
            {
                "channel": channel,
                "connections": len(ids),
                "delivered": result.delivered,
                "gone": len(result.gone),
                "failed": len(result.failed),
                "unsent": len(result.unsent),
                "queued": queued,
                "chunks": len(chunks),
                "duration_ms": result.duration_ms,
            },
        )
        return result

    def broadcast(
        self,
        gateway: Gateway,
        channel: str,
        sender: str,
        own: list[bytes],
        others: list[str],
        frames: list[bytes],
        deadline: Deadline,
    ) -> FanOutResult:
        """The sender's copy (``own``, with its ``ref``) first, then ``frames`` to ``others``: one result."""
        if own == frames:  # every copy the same: the sender is first in the first chunk
            return self.send(gateway, channel, [sender, *others], frames, deadline)
        result = self.send_here(gateway, channel, [sender], own, deadline, attempt=0)
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
        attempt: int,
    ) -> FanOutResult:
        """Post here, then settle: failures to a later attempt, what had no time to a later chunk."""
        result, failed_from, unsent_from, young_from = self._post_all(gateway, channel, ids, frames, deadline)
        if young_from and attempt >= LATER_ATTEMPTS:
            self._after_handshakes(
                gateway, channel, young_from, frames, deadline, result, failed_from, unsent_from
            )
        self._settle(gateway, channel, failed_from, frames, attempt, deadline)
        self._continue(gateway, channel, unsent_from, frames, attempt, deadline)
        return result

    def _after_handshakes(
        self,
        gateway: Gateway,
        channel: str,
        young_from: dict[str, int],
        frames: list[bytes],
        deadline: Deadline,
        result: FanOutResult,
        failed_from: dict[str, int],
        unsent_from: dict[str, int],
    ) -> None:
        """The last attempt: young connections that answered 410 get one more post once the grace is over.

        Without the time to wait (the deadline), they stay failed: their items are kept,
        and their clients are told if the note can reach them.
        """
        # created_at is in whole seconds: one more makes every young one older than the grace
        wait = self._handshake_grace + 1
        if deadline.remaining() <= wait:
            return
        self._sleep(wait)
        result.failed = [cid for cid in result.failed if cid not in young_from]
        for index, ids in self._by_frame(young_from).items():
            for cid in ids:
                del failed_from[cid]
            again, failed_again, unsent_again, _ = self._post_all(
                gateway, channel, ids, frames[index:], deadline
            )
            result.merge(again)
            failed_from.update((cid, index + i) for cid, i in failed_again.items())
            unsent_from.update((cid, index + i) for cid, i in unsent_again.items())

    def _hand_off(self, chunk: FanOutChunk) -> bool:
        if not self._chunk_function:
            return False
        try:
            self._invoker.invoke_async(self._chunk_function, chunk.to_payload())
        except Exception as exc:  # noqa: BLE001 - any failure to hand off: deliver here or tell the client
            logger.warning(
                "chunk hand-off failed",
                extra={"channel": chunk.channel, "attempt": chunk.attempt, "error": type(exc).__name__},
            )
            return False
        return True

    def _post_all(
        self,
        gateway: Gateway,
        channel: str,
        ids: list[str],
        frames: list[bytes],
        deadline: Deadline,
    ) -> tuple[FanOutResult, dict[str, int], dict[str, int], dict[str, int]]:
        """Every frame, in order, to every id; a connection that fails a frame gets no later one.

        Also answers, for each connection that failed, for each the deadline left no
        time for, and for each young one that answered 410 (among the failed), the index
        of the frame it stopped at.
        """
        total = FanOutResult()
        failed_from: dict[str, int] = {}
        unsent_from: dict[str, int] = {}
        young_from: dict[str, int] = {}
        started = time.perf_counter()
        remaining = ids
        for index, data in enumerate(frames):
            if not remaining:
                break
            young: set[str] = set()  # 410 while maybe still in the handshake: tried again later
            result = gateway.post_many(
                remaining, data, on_gone=self.remover(channel, young, deadline), deadline=deadline
            )
            if young:
                result.gone = [i for i in result.gone if i not in young]
                if self._contained:  # no later attempt to hand them: skipped, kept
                    logger.info("skipped connections still in their handshake", extra={"skipped": len(young)})
                else:
                    result.failed = [*result.failed, *young]
                    young_from.update((cid, index) for cid in young)
            total.merge(FanOutResult(0, result.gone, result.too_large, result.failed))
            total.delivered = result.delivered  # per connection, not per frame
            failed_from.update((cid, index) for cid in result.failed)
            unsent_from.update((cid, index) for cid in result.unsent)
            stopped = (
                set(result.gone) | set(result.failed) | set(result.too_large) | set(result.unsent) | young
            )
            remaining = [i for i in remaining if i not in stopped]
        total.unsent = list(unsent_from)
        total.duration_ms = elapsed_ms(started)
        self._metric("FanOutSize", len(ids))
        return total, failed_from, unsent_from, young_from

    def _by_frame(self, stopped_at: dict[str, int]) -> dict[int, list[str]]:
        groups: dict[int, list[str]] = {}
        for cid, index in stopped_at.items():
            groups.setdefault(index, []).append(cid)
        return groups

    def _continue(
        self,
        gateway: Gateway,
        channel: str,
        unsent_from: dict[str, int],
        frames: list[bytes],
        attempt: int,
        deadline: Deadline,
    ) -> None:
        """Connections the deadline left no time for: a later invocation posts what they lack."""
        lost: list[str] = []
        for index, ids in self._by_frame(unsent_from).items():
            if not self._hand_off(FanOutChunk(channel, ids, frames[index:], attempt)):
                lost += ids
        if unsent_from:
            logger.warning(
                "fan-out out of time", extra={"channel": channel, "handed_off": len(unsent_from) - len(lost)}
            )
        if lost:
            self._tell_failed(gateway, channel, lost, deadline)

    def _settle(
        self,
        gateway: Gateway,
        channel: str,
        failed_from: dict[str, int],
        frames: list[bytes],
        attempt: int,
        deadline: Deadline,
    ) -> None:
        """Posts that failed after the gateway's retries are tried again later, or the client is told."""
        unsettled: list[str] = []
        for index, ids in self._by_frame(failed_from).items():
            later = FanOutChunk(channel, ids, frames[index:], attempt + 1)
            if not (attempt < LATER_ATTEMPTS and self._hand_off(later)):
                unsettled += ids
        if unsettled:
            self._tell_failed(gateway, channel, unsettled, deadline)

    def _tell_failed(self, gateway: Gateway, channel: str, ids: list[str], deadline: Deadline) -> None:
        """A ``delivery_failed`` frame to each, best effort (counted whether or not it arrives)."""
        self._metric("DeliveryFailures", len(ids))
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


#: How far past the work deadline (into the Lambda reserve) ``delivery_failed`` notes may go.
RESERVE_FOR_NOTES = 1.0
