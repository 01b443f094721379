"""Fan-out to a channel: chunked across asynchronous invocations, failures settled.

A channel larger than ``PUSH_CHUNK_SIZE`` is split: the first chunk is posted by
the running invocation, the others are handed to ``push`` as ``FanOutChunk``
events. Every frame goes to every connection in order; a connection that fails
a frame gets no later one. A post that still fails after the gateway's retries
gets ``LATER_ATTEMPTS`` more tries from later invocations carrying only the
frames it has not received, then a ``delivery_failed`` frame: nothing is dropped
without a word.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from chalicelib import protocol
from chalicelib.gateway import FanOutResult
from chalicelib.internal_events import FanOutChunk
from chalicelib.ports import Gateway, GatewayFor, Invoker, Metric, Registry
from chalicelib.summary import HandlerRun, elapsed_ms

logger = logging.getLogger(__name__)

#: A post that still fails after the gateway's own retries gets this many more tries,
#: each from a later asynchronous invocation; then the client is told.
LATER_ATTEMPTS = 1


class FanOut:
    """Posts frames to the connections of one channel, handing off what is too much."""

    def __init__(
        self,
        registry: Registry,
        invoker: Invoker,
        *,
        chunk_size: int,
        chunk_function: str | None,
        metric: Metric,
    ) -> None:
        self._registry = registry
        self._invoker = invoker
        self._chunk_size = chunk_size
        self._chunk_function = chunk_function
        self._metric = metric

    def with_chunk_function(self, name: str | None) -> FanOut:
        """The same fan-out, handing chunks to ``name`` when none is configured."""
        if self._chunk_function or not name:
            return self
        return FanOut(
            self._registry,
            self._invoker,
            chunk_size=self._chunk_size,
            chunk_function=name,
            metric=self._metric,
        )

    def remover(self, channel: str) -> Callable[[str], None]:
        """What to do with a connection the Management API called gone (410)."""

        def remove(connection_id: str) -> None:
            self._registry.delete(channel, connection_id)
            self._metric("StaleRemoved", 1)

        return remove

    def to_channel(self, gateway: Gateway, channel: str, ids: list[str], frames: list[bytes]) -> FanOutResult:
        """Deliver ``frames`` to ``ids``: the first chunk here, the rest handed off."""
        size = self._chunk_size
        chunks = [ids[i : i + size] for i in range(0, len(ids), size)] or [[]]
        queued = 0
        for chunk in chunks[1:]:
            if self._hand_off(FanOutChunk(channel, gateway.endpoint, chunk, frames)):
                queued += len(chunk)
            else:  # cannot hand it off: deliver it here rather than lose it
                chunks[0] = chunks[0] + chunk
        result, failed_from = self.post_all(gateway, channel, chunks[0], frames)
        retried = self.settle(gateway, channel, failed_from, frames, attempt=0)
        logger.info(
            "fan-out",
            extra={
                "channel": channel,
                "connections": len(ids),
                "delivered": result.delivered,
                "gone": len(result.gone),
                "failed": len(result.failed),
                "queued": queued,
                "retried_later": retried,
                "chunks": len(chunks),
                "duration_ms": result.duration_ms,
            },
        )
        return result

    def _hand_off(self, chunk: FanOutChunk) -> bool:
        if not self._chunk_function:
            return False
        try:
            self._invoker.invoke_async(self._chunk_function, chunk.to_payload())
            return True
        except Exception as exc:
            logger.warning(
                "chunk hand-off failed",
                extra={"channel": chunk.channel, "attempt": chunk.attempt, "error": type(exc).__name__},
            )
            return False

    def post_all(
        self, gateway: Gateway, channel: str, ids: list[str], frames: list[bytes]
    ) -> tuple[FanOutResult, dict[str, int]]:
        """Every frame, in order, to every id; a connection that fails a frame gets no later one.

        Also answers, for each connection that failed, the index of the frame it failed at.
        """
        total = FanOutResult()
        failed_from: dict[str, int] = {}
        started = time.perf_counter()
        remaining = ids
        for index, data in enumerate(frames):
            result = gateway.fan_out(remaining, data, on_gone=self.remover(channel))
            total.merge(FanOutResult(0, result.gone, result.too_large, result.failed))
            total.delivered = result.delivered  # per connection, not per frame
            failed_from.update((cid, index) for cid in result.failed)
            dead = set(result.gone) | set(result.failed) | set(result.too_large)
            remaining = [i for i in remaining if i not in dead]
        total.duration_ms = elapsed_ms(started)
        self._metric("FanOutSize", len(ids))
        return total, failed_from

    def settle(
        self,
        gateway: Gateway,
        channel: str,
        failed_from: dict[str, int],
        frames: list[bytes],
        attempt: int,
    ) -> int:
        """Posts that failed after the gateway's retries are tried again later, or the client is told.

        Answers how many connections were handed to a later attempt.
        """
        if not failed_from:
            return 0
        groups: dict[int, list[str]] = {}
        for cid, index in failed_from.items():
            groups.setdefault(index, []).append(cid)
        unsettled: list[str] = []
        for index, ids in groups.items():
            later = FanOutChunk(channel, gateway.endpoint, ids, frames[index:], attempt + 1)
            if not (attempt < LATER_ATTEMPTS and self._hand_off(later)):
                unsettled += ids
        if unsettled:
            self._metric("DeliveryFailures", len(unsettled))
            logger.warning("delivery failed", extra={"channel": channel, "connections": len(unsettled)})
            note = protocol.error_frame(
                "delivery_failed",
                "a message could not be delivered to this connection; reload to catch up",
                retryable=True,
            )
            gateway.fan_out(unsettled, protocol.encode(note), on_gone=self.remover(channel))
        return len(failed_from) - len(unsettled)


class FanOutChunkCase:
    """Runs one ``FanOutChunk`` handed off by an earlier invocation."""

    def __init__(self, fan_out: FanOut, gateway_for: GatewayFor) -> None:
        self._fan_out = fan_out
        self._gateway_for = gateway_for

    def handle(self, payload: Any, own_function_name: str | None = None) -> dict[str, Any]:
        def fallback(outcome: str) -> dict[str, Any]:
            return {"error": {"code": outcome, "message": "the chunk could not be processed"}}

        with HandlerRun(
            "push", fallback, last_resort={"error": {"code": "internal_error"}}, message="push chunk"
        ) as run:
            try:
                chunk = FanOutChunk.from_payload(payload, max_attempt=LATER_ATTEMPTS)
            except ValueError:
                run.log["outcome"] = "invalid_event"
                run.result = {"error": {"code": "invalid_event", "message": "not a push chunk event"}}
                return run.answer()
            fan_out = self._fan_out.with_chunk_function(own_function_name)
            gateway = self._gateway_for(chunk.endpoint)
            result, failed_from = fan_out.post_all(gateway, chunk.channel, chunk.connection_ids, chunk.frames)
            retried = fan_out.settle(gateway, chunk.channel, failed_from, chunk.frames, chunk.attempt)
            run.log.update(
                outcome="delivered",
                channel=chunk.channel,
                connections=len(chunk.connection_ids),
                attempt=chunk.attempt,
                delivered=result.delivered,
                gone=len(result.gone),
                failed=len(result.failed),
                retried_later=retried,
            )
            run.result = {
                "delivered": result.delivered,
                "gone": len(result.gone),
                "failed": len(result.failed) + len(result.too_large),
            }
        return run.answer()
