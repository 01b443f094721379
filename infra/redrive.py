"""Re-invoke the failed events in the dead-letter queue, after the cause is fixed (``make redrive``).

    python -m infra.redrive --queue-url URL [--dry-run] [--max N] [--function NAME] [--prefix P]

The queue is the SQS dead-letter queue of the asynchronously invoked functions
(Terraform output ``websocket_dead_letter_queue_url``). Lambda puts an event there
when every attempt failed: the message body is the original event, and the
message attributes ``RequestID``, ``ErrorCode`` and ``ErrorMessage`` say what went
wrong. The queue is shared by ``deliver``, ``push`` and ``fanout``, so each
message's function is decided, in this order:

1. ``--function NAME``: every message goes to that function (an override).
2. The sender: Lambda sends to the queue with the failed function's execution
   role, whose session is named after the function, so the session part of
   the message's ``SenderId`` (``AROA...:ws-proxy-dev-push``) names it when it is
   one of this deployment's functions.
3. The event's shape (:func:`classify`), today's events as the app writes them:
   ``{"chunk": ...}`` or ``connection_ids`` (a list): a fan-out chunk, for
   ``fanout``, or ``push`` in a deployment that has no ``fanout`` function
   (Lambda answers ResourceNotFoundException, and the next candidate is tried);
   ``channel`` an object (``{"booking_id": ...}``, ``{"user_id": ...}``,
   ``{"feed": true}``): the backend's push, for ``push``; ``connection_id`` (a
   string) with ``frames``: a new connection's initial frames, for ``deliver``.
   Anything else is left in the queue and reported as unknown.

Function names are ``{prefix}-{kind}``; the prefix (``ws-proxy-dev``) is ``--prefix``
or comes from the queue's name, ``{prefix}-websocket-api-async-dlq``.

``--dry-run`` lists each message (function, size, age, receive count, error) and
changes nothing: the messages it saw are made visible again at the end. Without
it, each event is re-invoked asynchronously (``InvocationType=Event``, as the app
invokes it) and its message deleted only after Lambda accepted the invocation
(202). A message that cannot be redriven stays in the queue, visible again at
the end. Neither mode prints an event's body or anything in it (tokens, frames):
error messages are shortened, and token-like strings in them are masked.

The region is the queue URL's (``sqs.{region}.amazonaws.com``); for a URL that
names none, boto3's (AWS_DEFAULT_REGION or the profile's; not AWS_REGION). With
no region, or when AWS refuses or cannot be reached, the command stops with one
line on stderr.

Exit status: 0 when every message seen was redriven (or listed, with --dry-run,
and its function known), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from infra import region as regions

KINDS = ("deliver", "push", "fanout")
QUEUE_SUFFIX = "-websocket-api-async-dlq"
#: How long a received message stays hidden while this run holds it, in seconds.
HOLD_SECONDS = 300
ERROR_CHARS = 160
_TOKENISH = re.compile(
    r"[A-Za-z0-9_\-+/=]{32,}(?:\.[A-Za-z0-9_\-+/=]+)*|eyJ[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]*)*"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RedriveError(Exception):
    """The command cannot run as asked (bad arguments, no prefix)."""


# -- deciding the function ----------------------------------------------------------------------


def classify(event: Any) -> list[str]:
    """The function kinds an event's shape belongs to, most likely first (empty: unknown)."""
    if not isinstance(event, dict):
        return []
    if isinstance(event.get("chunk"), dict) or isinstance(event.get("connection_ids"), list):
        return ["fanout", "push"]
    if isinstance(event.get("channel"), dict):
        return ["push"]
    if isinstance(event.get("connection_id"), str) and "frames" in event:
        return ["deliver"]
    if isinstance(event.get("presence"), dict):  # a presence event, which deliver announces
        return ["deliver"]
    return []


def prefix_from_queue_url(queue_url: str) -> str:
    name = queue_url.rstrip("/").rsplit("/", 1)[-1]
    if not name.endswith(QUEUE_SUFFIX) or len(name) == len(QUEUE_SUFFIX):
        raise RedriveError(
            f"cannot tell the functions' prefix from queue {name!r} (expected <prefix>{QUEUE_SUFFIX}): "
            "give --prefix, e.g. --prefix ws-proxy-dev"
        )
    return name[: -len(QUEUE_SUFFIX)]


def sender_function(sender_id: str | None, prefix: str) -> str | None:
    """The function named by a SenderId's session part, if it is one of this deployment's."""
    if not sender_id or ":" not in sender_id:
        return None
    session = sender_id.split(":", 1)[1]
    return session if session in {f"{prefix}-{kind}" for kind in KINDS} else None


def mask(text: str) -> str:
    """An error message fit to print: one line, short, token-like strings masked."""
    text = _CONTROL.sub(" ", text)
    text = _TOKENISH.sub("[masked]", text)
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


# -- one message -----------------------------------------------------------------------------


@dataclass
class Item:
    message_id: str
    receipt: str
    size: int
    candidates: list[str]  # function names, most likely first
    source: str  # "--function", "sender", "shape" or "unknown"
    error: str
    receives: int
    age_seconds: float | None
    body: str = field(repr=False)

    def describe(self) -> str:
        target = self.candidates[0] if self.candidates else "UNKNOWN function (left in the queue)"
        if len(self.candidates) > 1:
            target += f" (else {', '.join(self.candidates[1:])})"
        age = f"{self.age_seconds / 3600:.1f} h old" if self.age_seconds is not None else "age unknown"
        return (
            f"{self.message_id[:8]} -> {target} [by {self.source}]: {self.size} bytes, {age}, "
            f"received {self.receives}x; error: {self.error or '(none given)'}"
        )


def _attribute(message: dict[str, Any], name: str) -> str:
    value = message.get("MessageAttributes", {}).get(name, {})
    return str(value.get("StringValue", ""))


def read_message(message: dict[str, Any], prefix: str, function: str | None, now: float) -> Item:
    body = str(message.get("Body", ""))
    attributes = message.get("Attributes", {})
    try:
        event: Any = json.loads(body)
    except ValueError:
        event = None
    if function:
        candidates, source = [function], "--function"
    elif sender := sender_function(attributes.get("SenderId"), prefix):
        candidates, source = [sender], "sender"
    elif kinds := classify(event):
        candidates, source = [f"{prefix}-{k}" for k in kinds], "shape"
    else:
        candidates, source = [], "unknown"
    if event is None or not isinstance(event, dict):
        candidates, source = [], "unknown (the body is not a JSON object)"
    code = _attribute(message, "ErrorCode")
    error = mask(" ".join(p for p in (code, _attribute(message, "ErrorMessage")) if p))
    sent = attributes.get("SentTimestamp")
    age = (now - int(sent) / 1000) if sent and str(sent).isdigit() else None
    return Item(
        message_id=str(message.get("MessageId", "")),
        receipt=str(message["ReceiptHandle"]),
        size=len(body.encode("utf-8")),
        candidates=candidates,
        source=source,
        error=error,
        receives=int(attributes.get("ApproximateReceiveCount", 0) or 0),
        age_seconds=age,
        body=body,
    )


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Summary:
    seen: int = 0
    redriven: int = 0
    unknown: int = 0
    failed: int = 0
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.unknown == 0 and self.failed == 0


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", type(exc).__name__))
    return type(exc).__name__


def invoke(lambda_client: Any, item: Item) -> tuple[str | None, str]:
    """Invoke the first candidate that exists; (function that accepted it, or None; what happened)."""
    notes = []
    for name in item.candidates:
        try:
            response = lambda_client.invoke(
                FunctionName=name, InvocationType="Event", Payload=item.body.encode()
            )
        except Exception as exc:  # noqa: BLE001 - the message stays in the queue, the reason is listed
            code = _error_code(exc)
            notes.append(f"{name}: {code}")
            if code == "ResourceNotFoundException":
                continue  # e.g. no fanout function in this deployment: try the next candidate
            return None, "; ".join(notes)
        status = response.get("StatusCode")
        if status == 202:
            return name, "; ".join([*notes, f"{name}: accepted"])
        notes.append(f"{name}: answered {status}")
        return None, "; ".join(notes)
    return None, "; ".join(notes) or "no function to invoke"


def redrive(
    sqs: Any,
    lambda_client: Any,
    queue_url: str,
    *,
    prefix: str,
    function: str | None = None,
    dry_run: bool = False,
    limit: int | None = None,
    clock: Callable[[], float] = time.time,
    echo: Callable[[str], None] = lambda line: None,
    wait_seconds: int = 2,
) -> Summary:
    summary = Summary()

    def say(line: str) -> None:
        summary.lines.append(line)
        echo(line)

    held: dict[str, str] = {}  # message id -> receipt handle, to make visible again at the end
    seen_ids: set[str] = set()
    try:
        while limit is None or summary.seen < limit:
            want = 10 if limit is None else max(1, min(10, limit - summary.seen))
            response = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=want,
                VisibilityTimeout=HOLD_SECONDS,
                WaitTimeSeconds=wait_seconds,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
            )
            messages = response.get("Messages", [])
            if not messages:
                break
            fresh = [m for m in messages if m.get("MessageId") not in seen_ids]
            for message in messages:
                if message.get("MessageId") in seen_ids:  # came round again: hand it back
                    held[message["MessageId"]] = message["ReceiptHandle"]
            if not fresh:
                break
            for message in fresh:
                if limit is not None and summary.seen >= limit:
                    held[message["MessageId"]] = message["ReceiptHandle"]
                    continue
                seen_ids.add(message["MessageId"])
                summary.seen += 1
                item = read_message(message, prefix, function, clock())
                if not item.candidates:
                    summary.unknown += 1
                    held[item.message_id] = item.receipt
                    say(f"skip    {item.describe()}")
                    continue
                if dry_run:
                    held[item.message_id] = item.receipt
                    say(f"would   {item.describe()}")
                    continue
                accepted, what = invoke(lambda_client, item)
                if accepted is None:
                    summary.failed += 1
                    held[item.message_id] = item.receipt
                    say(f"FAILED  {item.describe()}: {what}")
                    continue
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=item.receipt)
                summary.redriven += 1
                say(f"redrove {item.describe()}: {what}")
    finally:
        release(sqs, queue_url, held.values())
    verb = "listed" if dry_run else "redriven"
    done = summary.seen - summary.unknown if dry_run else summary.redriven
    say(
        f"{summary.seen} message(s): {done} {verb}, {summary.failed} failed, {summary.unknown} unknown"
        + (" (nothing changed)" if dry_run else "")
    )
    return summary


def release(sqs: Any, queue_url: str, receipts: Iterable[str]) -> None:
    """Make held messages visible again now, rather than after HOLD_SECONDS."""
    for receipt in receipts:
        try:
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=0)
        except Exception as exc:  # noqa: BLE001 - they come back after HOLD_SECONDS anyway
            print(f"note: a message stays hidden for {HOLD_SECONDS} s ({_error_code(exc)})", file=sys.stderr)


def region_of(queue_url: str) -> str | None:
    """The region an SQS queue URL names (``sqs.{region}.amazonaws.com`` or the legacy
    ``{region}.queue.amazonaws.com``), or None (a VPC endpoint, a custom one)."""
    match = re.match(
        r"https://(?:sqs\.([a-z0-9-]+)|([a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?/", queue_url
    )
    return (match.group(1) or match.group(2)) if match else None


def main(argv: list[str] | None = None, sqs: Any = None, lambda_client: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--queue-url", required=True, help="the dead-letter queue (websocket_dead_letter_queue_url)"
    )
    parser.add_argument("--dry-run", action="store_true", help="list the messages, change nothing")
    parser.add_argument("--max", type=int, default=None, help="handle at most this many messages")
    parser.add_argument("--function", help="invoke this function for every message (override)")
    parser.add_argument(
        "--prefix", help="function name prefix, e.g. ws-proxy-dev (default: from the queue name)"
    )
    args = parser.parse_args(argv)
    if args.max is not None and args.max < 1:
        parser.error("--max must be 1 or more")
    try:
        prefix = args.prefix or prefix_from_queue_url(args.queue_url)
    except RedriveError as exc:
        parser.error(str(exc))
    try:
        if sqs is None or lambda_client is None:
            import boto3

            region = region_of(args.queue_url) or regions.require("make redrive")
            sqs = sqs or boto3.client("sqs", region_name=region)
            lambda_client = lambda_client or boto3.client("lambda", region_name=region)
        summary = redrive(
            sqs,
            lambda_client,
            args.queue_url,
            prefix=prefix,
            function=args.function,
            dry_run=args.dry_run,
            limit=args.max,
            echo=print,
        )
    except (
        BotoCoreError,
        ClientError,
    ) as exc:  # no such profile, credentials or queue, unreachable: one line
        code, text = _error_code(exc), mask(str(exc))
        raise SystemExit(f"error: {args.queue_url}: {text if code in text else f'{code}: {text}'}") from None
    return 0 if summary.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
