"""The proxy's use cases, framework-free: connect, message, disconnect, deliver, push.

``Proxy`` takes its dependencies (registry, backend, gateways, invoker) in its
constructor; ``app.py`` builds them lazily once per container. Every public
method returns a defined answer (CONTRACT.md): no path ends in an exception.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib import protocol
from chalicelib.config import Settings
from chalicelib.errors import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    DeliveryFailed,
    InvalidMessage,
    ProxyError,
    TooLarge,
    UnknownConnection,
)
from chalicelib.gateway import ConnectionGateway, FanOutResult, PostOutcome
from chalicelib.registry import Connection, ConnectionRegistry

logger = logging.getLogger(__name__)

#: How long the deferred delivery keeps retrying 410 while the handshake completes.
DELIVER_RETRY_SECONDS = 5.0
#: Lambda's asynchronous invocation payload limit, with room for the envelope.
ASYNC_PAYLOAD_LIMIT = 240 * 1024
_USER_ID_MAX = 128
#: A post that still fails after the gateway's own retries gets this many more tries,
#: each from a later asynchronous invocation of ``push``; then the client is told.
LATER_ATTEMPTS = 1


class Invoker(Protocol):
    def invoke_async(self, function_name: str, payload: Mapping[str, Any]) -> None:
        """Start ``function_name`` with ``payload`` (InvocationType=Event)."""


class Backend(Protocol):
    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]: ...


def pack_frames(frames: list[bytes]) -> str:
    """Frames for an asynchronous invocation: compressed, so large histories fit."""
    raw = json.dumps([f.decode("utf-8") for f in frames], ensure_ascii=False).encode("utf-8")
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def unpack_frames(packed: str) -> list[bytes]:
    frames = json.loads(zlib.decompress(base64.b64decode(packed)))
    if not isinstance(frames, list) or not all(isinstance(f, str) for f in frames):
        raise ValueError("frames must be a list of strings")
    return [f.encode("utf-8") for f in frames]


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


@dataclass(frozen=True)
class PushTarget:
    channel: str
    connection_type: str | None
    frames: list[bytes]
    exclude: frozenset[str]


class Proxy:
    def __init__(
        self,
        settings: Settings,
        registry: ConnectionRegistry,
        backend: Backend,
        gateway_for: Callable[[str], ConnectionGateway],
        invoker: Invoker,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        metric: Callable[[str, float], None] = lambda name, value: None,
        deliver_retry_seconds: float = DELIVER_RETRY_SECONDS,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.backend = backend
        self.gateway_for = gateway_for
        self.invoker = invoker
        self._clock = clock
        self._sleep = sleep
        self._metric = metric
        self._deliver_retry_seconds = deliver_retry_seconds

    # -- helpers -----------------------------------------------------------

    def endpoint_for(self, request_context: Mapping[str, Any]) -> str:
        """``API_GATEWAY_ENDPOINT``, else ``https://{domainName}/{stage}`` (custom domains work)."""
        if self.settings.api_gateway_endpoint:
            return self.settings.api_gateway_endpoint
        return f"https://{request_context['domainName']}/{request_context['stage']}"

    def _remove(self, channel: str) -> Callable[[str], None]:
        def remove(connection_id: str) -> None:
            self.registry.delete(channel, connection_id)
            self._metric("StaleRemoved", 1)

        return remove

    # -- $connect ----------------------------------------------------------

    def connect(self, event: Mapping[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        ctx = event.get("requestContext") or {}
        connection_id = str(ctx.get("connectionId", ""))
        log: dict[str, Any] = {"route": "$connect", "connection_id": connection_id}
        try:
            response = self._connect(event, ctx, connection_id, log)
            log["outcome"] = "accepted"
            self._metric("ConnectionsOpened", 1)
        except ProxyError as exc:
            log["outcome"] = exc.code
            response = {"statusCode": exc.status, "body": exc.message}
            self._metric("ConnectionsRejected", 1)
            if exc.code in ("backend_unavailable", "backend_error"):
                self._metric("BackendErrors", 1)
        except ConfigurationError as exc:
            logger.error("configuration error", extra={**log, "error": str(exc)})
            log["outcome"] = "misconfigured"
            response = {"statusCode": 500, "body": "the proxy is misconfigured"}
        except Exception:
            logger.exception("connect failed", extra=log)
            log["outcome"] = "internal_error"
            response = {"statusCode": 500, "body": "internal error"}
        log["status"] = response["statusCode"]
        log["duration_ms"] = _ms(started)
        logger.info("connect", extra=log)
        return response

    def _connect(
        self, event: Mapping[str, Any], ctx: Mapping[str, Any], connection_id: str, log: dict[str, Any]
    ) -> dict[str, Any]:
        headers = event.get("headers") or {}
        protocol.check_origin(headers, self.settings.allowed_origins)
        request = protocol.parse_connect(event.get("queryStringParameters"), headers, self.settings.routes)
        log["type"] = request.connection_type
        answer: dict[str, Any] = {}
        path = request.route.connect_path(request.booking_id)
        if path is not None:
            answer = self.backend.post(path, {"connection_id": connection_id, "token": request.token})
        user_id = answer.get("user_id")
        if isinstance(user_id, bool) or not isinstance(user_id, (str, int, type(None))):
            raise BackendError("the chat service answered an invalid user_id")
        user = None if user_id is None or user_id == "" else str(user_id)
        if user is not None and len(user) > _USER_ID_MAX:
            raise BackendError("the chat service answered an invalid user_id")
        if "{user_id}" in request.route.channel and user is None:
            raise BackendError("the chat service did not say which user connected")
        channel = request.route.channel_for(request.booking_id, user)
        log["channel"] = channel
        frames: list[bytes] = []
        for key in ("initial", "receipt"):
            payload = answer.get(key)
            if payload is None:
                continue
            try:
                frames.extend(protocol.frames_for(payload))
            except TooLarge as exc:
                frames.append(protocol.encode(protocol.error_frame_for(exc)))
        now = int(self._clock())
        conn = Connection(
            connection_id=connection_id,
            channel=channel,
            connection_type=request.connection_type,
            user_id=user,
            token=request.token,
            created_at=now,
            ttl=now + self.settings.connection_ttl_seconds,
        )
        self.registry.put(conn)
        if frames:
            try:
                self._schedule_delivery(conn, self.endpoint_for(ctx), frames)
            except Exception:
                self.registry.delete(channel, connection_id)
                raise
        response: dict[str, Any] = {"statusCode": 200}
        if request.bearer_subprotocol:
            response["headers"] = {"Sec-WebSocket-Protocol": protocol.BEARER_SUBPROTOCOL}
        return response

    def _schedule_delivery(self, conn: Connection, endpoint: str, frames: list[bytes]) -> None:
        name = self.settings.deliver_function_name
        if not name:
            raise ConfigurationError("DELIVER_FUNCTION_NAME is required to deliver initial payloads")
        packed = pack_frames(frames)
        if len(packed) > ASYNC_PAYLOAD_LIMIT:
            # Too large even compressed: say so to the client instead of dropping it.
            note = protocol.error_frame(
                "too_large", "the initial payload is too large to deliver; reload in smaller pages"
            )
            packed = pack_frames([protocol.encode(note)])
        event = {
            "connection_id": conn.connection_id,
            "channel": conn.channel,
            "endpoint": endpoint,
            "frames": packed,
        }
        try:
            self.invoker.invoke_async(name, event)
        except Exception as exc:
            logger.error(
                "deferred delivery could not be scheduled",
                extra={"connection_id": conn.connection_id, "error": type(exc).__name__},
            )
            raise DeliveryFailed("the chat history could not be scheduled; reconnect") from exc

    # -- deferred delivery (asynchronous invocation) --------------------------

    def deliver(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Post the initial frames in order once the handshake has completed."""
        started = time.perf_counter()
        try:
            connection_id = str(event["connection_id"])
            channel = str(event["channel"])
            endpoint = str(event["endpoint"])
            frames = unpack_frames(str(event["frames"]))
        except (KeyError, TypeError, ValueError, zlib.error) as exc:
            logger.error("invalid delivery event", extra={"error": type(exc).__name__})
            return {"error": {"code": "invalid_event", "message": "not a delivery event"}}
        gateway = self.gateway_for(endpoint)
        deadline = time.monotonic() + self._deliver_retry_seconds
        delivered = 0
        outcome = "delivered"
        delay = 0.05
        for frame in frames:
            while True:
                result = gateway.post(connection_id, frame)
                if result is not PostOutcome.GONE or time.monotonic() >= deadline:
                    break
                self._sleep(delay)  # 410 until API Gateway has completed the handshake
                delay = min(delay * 2, 0.5)
            if result is PostOutcome.DELIVERED:
                delivered += 1
                continue
            outcome = result.value
            if result is PostOutcome.GONE:
                self._remove(channel)(connection_id)
            else:
                gateway.post(
                    connection_id,
                    protocol.encode(
                        protocol.error_frame(
                            "delivery_failed",
                            "part of the initial payload could not be delivered; reconnect",
                            retryable=True,
                        )
                    ),
                )
                self._metric("DeliveryFailures", 1)
            break
        logger.info(
            "deliver",
            extra={
                "route": "deliver",
                "connection_id": connection_id,
                "channel": channel,
                "frames": len(frames),
                "delivered": delivered,
                "outcome": outcome,
                "duration_ms": _ms(started),
            },
        )
        return {"delivered": delivered, "frames": len(frames), "outcome": outcome}

    # -- $default ----------------------------------------------------------

    def message(self, event: Mapping[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        ctx = event.get("requestContext") or {}
        connection_id = str(ctx.get("connectionId", ""))
        log: dict[str, Any] = {"route": "$default", "connection_id": connection_id}
        ref: Any = None
        try:
            gateway = self.gateway_for(self.endpoint_for(ctx))
        except Exception:
            logger.exception("no gateway for this event", extra=log)
            return {"statusCode": 500}
        try:
            frame = protocol.parse_frame(event.get("body"), is_base64=bool(event.get("isBase64Encoded")))
            ref = protocol.reference(frame)
            if protocol.is_ping(frame):
                log["outcome"] = "pong"
                self._reply(gateway, connection_id, protocol.PONG)
            else:
                self._message(gateway, connection_id, frame, log)
            self._metric("Messages", 1)
        except ProxyError as exc:
            log["outcome"] = exc.code
            if exc.code in ("backend_unavailable", "backend_error"):
                self._metric("BackendErrors", 1)
            self._reply(gateway, connection_id, protocol.error_frame_for(exc, ref))
        except ConfigurationError as exc:
            logger.error("configuration error", extra={**log, "error": str(exc)})
            log["outcome"] = "misconfigured"
            self._reply(
                gateway,
                connection_id,
                protocol.error_frame("backend_unavailable", "the proxy is misconfigured", ref=ref),
            )
        except Exception:
            logger.exception("message failed", extra=log)
            log["outcome"] = "internal_error"
            self._reply(
                gateway,
                connection_id,
                protocol.error_frame(
                    "backend_unavailable",
                    "the message could not be processed; try again",
                    retryable=True,
                    ref=ref,
                ),
            )
        log["duration_ms"] = _ms(started)
        logger.info("message", extra=log)
        return {"statusCode": 200}

    def _message(
        self, gateway: ConnectionGateway, connection_id: str, frame: dict[str, Any], log: dict[str, Any]
    ) -> None:
        conn = self.registry.find(connection_id)
        if conn is None:
            raise UnknownConnection("this connection is not registered; reconnect")
        route = self.settings.routes.get(conn.connection_type)
        if route is None:
            raise UnknownConnection("this connection's type is no longer served; reconnect")
        log.update(channel=conn.channel, type=conn.connection_type)
        body: dict[str, Any] = {"connection_id": connection_id, "message": frame}
        if conn.token is not None:
            body["token"] = conn.token
        booking_id = conn.channel if route.needs_booking else None
        answer = self.backend.post(route.message_path(booking_id), body)
        frames = protocol.frames_for(answer)
        broadcast = answer.get("broadcast") is True
        try:
            if broadcast:
                result = self._broadcast(gateway, conn, frames)
            else:
                result = self._fan_out_chunked(
                    gateway, conn.channel, [connection_id], frames, self.settings.push_function_name
                )
        except BackendUnavailable as exc:
            # The backend has accepted the message: resending it would store it twice.
            raise DeliveryFailed(
                "the message was accepted but could not be delivered to everyone; do not resend it"
            ) from exc
        log.update(
            outcome="broadcast" if broadcast else "replied",
            delivered=result.delivered,
            gone=len(result.gone),
            failed=len(result.failed),
        )
        if connection_id in result.too_large:
            raise TooLarge("the reply is over the message limit")

    def _reply(self, gateway: ConnectionGateway, connection_id: str, frame: dict[str, Any]) -> None:
        """One of the proxy's own frames (pong, error) to the sender, best effort."""
        if gateway.post(connection_id, protocol.encode(frame)) is PostOutcome.FAILED:
            self._metric("DeliveryFailures", 1)

    def _broadcast(self, gateway: ConnectionGateway, sender: Connection, frames: list[bytes]) -> FanOutResult:
        ids = list(self.registry.channel_ids(sender.channel, sender.connection_type))
        if sender.connection_id in ids:  # the sender's own chunk is the first
            ids.remove(sender.connection_id)
            ids.insert(0, sender.connection_id)
        return self._fan_out_chunked(gateway, sender.channel, ids, frames, self.settings.push_function_name)

    # -- fan-out, chunked across asynchronous invocations -----------------------

    def _fan_out_chunked(
        self,
        gateway: ConnectionGateway,
        channel: str,
        ids: list[str],
        frames: list[bytes],
        chunk_function: str | None,
    ) -> FanOutResult:
        size = self.settings.push_chunk_size
        chunks = [ids[i : i + size] for i in range(0, len(ids), size)] or [[]]
        queued = 0
        for chunk in chunks[1:]:
            if chunk_function and self._queue_chunk(chunk_function, gateway.endpoint, channel, chunk, frames):
                queued += len(chunk)
            else:  # cannot hand it off: deliver it here rather than lose it
                chunks[0] = chunks[0] + chunk
        result, failed_from = self._fan_out(gateway, channel, chunks[0], frames)
        retried = self._settle_failures(gateway, channel, failed_from, frames, chunk_function, attempt=0)
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

    def _queue_chunk(
        self,
        function: str,
        endpoint: str,
        channel: str,
        chunk: list[str],
        frames: list[bytes],
        attempt: int = 0,
    ) -> bool:
        body: dict[str, Any] = {
            "channel": channel,
            "endpoint": endpoint,
            "connection_ids": chunk,
            "frames": pack_frames(frames),
        }
        if attempt:
            body["attempt"] = attempt
        event = {"chunk": body}
        try:
            self.invoker.invoke_async(function, event)
            return True
        except Exception as exc:
            logger.warning(
                "chunk hand-off failed",
                extra={"channel": channel, "attempt": attempt, "error": type(exc).__name__},
            )
            return False

    def _fan_out(
        self, gateway: ConnectionGateway, channel: str, ids: list[str], frames: list[bytes]
    ) -> tuple[FanOutResult, dict[str, int]]:
        """Every frame, in order, to every id; a connection that fails a frame gets no later one.

        Also answers, for each connection that failed, the index of the frame it failed at.
        """
        total = FanOutResult()
        failed_from: dict[str, int] = {}
        started = time.perf_counter()
        remaining = ids
        for index, data in enumerate(frames):
            result = gateway.fan_out(remaining, data, on_gone=self._remove(channel))
            total.merge(FanOutResult(0, result.gone, result.too_large, result.failed))
            total.delivered = result.delivered  # per connection, not per frame
            failed_from.update((cid, index) for cid in result.failed)
            dead = set(result.gone) | set(result.failed) | set(result.too_large)
            remaining = [i for i in remaining if i not in dead]
        total.duration_ms = _ms(started)
        self._metric("FanOutSize", len(ids))
        return total, failed_from

    def _settle_failures(
        self,
        gateway: ConnectionGateway,
        channel: str,
        failed_from: dict[str, int],
        frames: list[bytes],
        chunk_function: str | None,
        attempt: int,
    ) -> int:
        """Posts that failed after the gateway's retries are tried again later, or the client is told.

        A later attempt is an asynchronous invocation of ``push`` carrying the frames the
        connection has not received yet. Past ``LATER_ATTEMPTS`` (or without a function to
        hand off to) the connection gets a ``delivery_failed`` frame, best effort: nothing
        is dropped without a word. Answers how many connections were handed to a later attempt.
        """
        if not failed_from:
            return 0
        groups: dict[int, list[str]] = {}
        for cid, index in failed_from.items():
            groups.setdefault(index, []).append(cid)
        unsettled: list[str] = []
        for index, ids in groups.items():
            if not (
                attempt < LATER_ATTEMPTS
                and chunk_function
                and self._queue_chunk(
                    chunk_function, gateway.endpoint, channel, ids, frames[index:], attempt + 1
                )
            ):
                unsettled += ids
        if unsettled:
            self._metric("DeliveryFailures", len(unsettled))
            logger.warning("delivery failed", extra={"channel": channel, "connections": len(unsettled)})
            note = protocol.error_frame(
                "delivery_failed",
                "a message could not be delivered to this connection; reload to catch up",
                retryable=True,
            )
            gateway.fan_out(unsettled, protocol.encode(note), on_gone=self._remove(channel))
        return len(failed_from) - len(unsettled)

    # -- $disconnect -------------------------------------------------------

    def disconnect(self, event: Mapping[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        ctx = event.get("requestContext") or {}
        connection_id = str(ctx.get("connectionId", ""))
        log: dict[str, Any] = {"route": "$disconnect", "connection_id": connection_id}
        try:
            conn = self.registry.find(connection_id)
            if conn is None:
                log["outcome"] = "unknown"
            else:
                self.registry.delete(conn.channel, connection_id)
                log.update(outcome="removed", channel=conn.channel)
                self._metric("ConnectionsClosed", 1)
        except Exception as exc:  # best effort: TTL removes what we could not
            log["outcome"] = "error"
            logger.error("disconnect cleanup failed", extra={**log, "error": type(exc).__name__})
        log["duration_ms"] = _ms(started)
        logger.info("disconnect", extra=log)
        return {"statusCode": 200}

    # -- server push -------------------------------------------------------

    def push(self, event: Any, own_function_name: str | None = None) -> dict[str, Any]:
        """Send a payload to a channel on the backend's behalf (or run one chunk of it)."""
        started = time.perf_counter()
        try:
            if isinstance(event, dict) and "chunk" in event:
                return self._push_chunk(event["chunk"], self.settings.push_function_name or own_function_name)
            if not self.settings.api_gateway_endpoint:
                raise ConfigurationError("API_GATEWAY_ENDPOINT is required for push")
            target = parse_push(event, self.settings)
            gateway = self.gateway_for(self.settings.api_gateway_endpoint)
            ids = [
                i
                for i in self.registry.channel_ids(target.channel, target.connection_type)
                if i not in target.exclude
            ]
            function = self.settings.push_function_name or own_function_name
            result = self._fan_out_chunked(gateway, target.channel, ids, target.frames, function)
            queued = len(ids) - result.attempted
            answer = {
                "delivered": result.delivered,
                "gone": len(result.gone),
                "failed": len(result.failed) + len(result.too_large),
                "queued": queued,
            }
            logger.info(
                "push",
                extra={
                    "route": "push",
                    "channel": target.channel,
                    "connections": len(ids),
                    **answer,
                    "duration_ms": _ms(started),
                },
            )
            return answer
        except ProxyError as exc:
            return {
                "error": {
                    "code": "invalid_event" if isinstance(exc, InvalidMessage) else exc.code,
                    "message": exc.message,
                }
            }
        except ConfigurationError as exc:
            logger.error("configuration error", extra={"route": "push", "error": str(exc)})
            return {"error": {"code": "misconfigured", "message": str(exc)}}
        except Exception:
            logger.exception("push failed", extra={"route": "push"})
            return {"error": {"code": "internal_error", "message": "the push could not be processed"}}

    def _push_chunk(self, chunk: Any, function: str | None) -> dict[str, Any]:
        try:
            channel = str(chunk["channel"])
            endpoint = str(chunk["endpoint"])
            ids = [str(i) for i in chunk["connection_ids"]]
            frames = unpack_frames(str(chunk["frames"]))
            attempt = chunk.get("attempt", 0)
            if (
                not isinstance(attempt, int)
                or isinstance(attempt, bool)
                or not 0 <= attempt <= LATER_ATTEMPTS
            ):
                raise ValueError("attempt out of range")
        except (KeyError, TypeError, ValueError, AttributeError, zlib.error):
            raise InvalidMessage("not a push chunk event") from None
        gateway = self.gateway_for(endpoint)
        result, failed_from = self._fan_out(gateway, channel, ids, frames)
        retried = self._settle_failures(gateway, channel, failed_from, frames, function, attempt)
        logger.info(
            "push chunk",
            extra={
                "route": "push",
                "channel": channel,
                "connections": len(ids),
                "attempt": attempt,
                "delivered": result.delivered,
                "gone": len(result.gone),
                "failed": len(result.failed),
                "retried_later": retried,
                "duration_ms": result.duration_ms,
            },
        )
        return {
            "delivered": result.delivered,
            "gone": len(result.gone),
            "failed": len(result.failed) + len(result.too_large),
        }


def parse_push(event: Any, settings: Settings) -> PushTarget:
    """Validate a push event; ``InvalidMessage`` or ``TooLarge`` says what is wrong."""
    if not isinstance(event, dict):
        raise InvalidMessage("the push event must be a JSON object")
    unknown = set(event) - {"channel", "connection_type", "payload", "exclude"}
    if unknown:
        raise InvalidMessage(f"unknown field(s) {sorted(unknown)}")
    spec = event.get("channel")
    if not isinstance(spec, dict) or len(spec) != 1:
        raise InvalidMessage('channel must be one of {"booking_id": ...}, {"user_id": ...}, {"feed": true}')
    ((kind, value),) = spec.items()
    if kind == "booking_id":
        if (
            not isinstance(value, (str, int))
            or isinstance(value, bool)
            or not protocol.BOOKING_ID_PATTERN.fullmatch(str(value))
        ):
            raise InvalidMessage("channel.booking_id must be 1-64 characters of letters, digits, '_' or '-'")
        channel = settings.routes["booking"].channel_for(str(value), None)
    elif kind == "user_id":
        if (
            not isinstance(value, (str, int))
            or isinstance(value, bool)
            or not str(value)
            or len(str(value)) > _USER_ID_MAX
        ):
            raise InvalidMessage("channel.user_id must be a non-empty string or number")
        channel = settings.routes["notification"].channel_for(None, str(value))
    elif kind == "feed":
        if value is not True:
            raise InvalidMessage("channel.feed must be true")
        channel = settings.routes["feed"].channel_for(None, None)
    else:
        raise InvalidMessage(f"unknown channel kind {kind!r}")
    connection_type = event.get("connection_type")
    if connection_type is not None and connection_type not in settings.routes:
        raise InvalidMessage(f"connection_type must be one of {', '.join(sorted(settings.routes))}")
    exclude = event.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(i, str) for i in exclude):
        raise InvalidMessage("exclude must be a list of connection ids")
    if "payload" not in event:
        raise InvalidMessage("payload is required")
    payload = event["payload"]
    if not isinstance(payload, dict):
        raise InvalidMessage("payload must be a JSON object")
    try:
        data = protocol.encode(payload)
    except ValueError:
        raise InvalidMessage("payload must be valid JSON (no NaN or Infinity)") from None
    if len(data) > protocol.MAX_MESSAGE_BYTES:
        raise TooLarge(
            f"the payload is {len(data)} bytes, over the {protocol.MAX_MESSAGE_BYTES // 1024} KB limit"
        )
    return PushTarget(channel, connection_type, [data], frozenset(exclude))
