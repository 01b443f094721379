"""``make redrive``: failed events from the dead-letter queue back to their functions.

SQS is a moto server; Lambda's Invoke API is a loopback stand-in that can answer
like a missing function (404 ResourceNotFoundException) or a failing service (500).
Messages are put in the queue the way Lambda puts a failed asynchronous event: the
event as the body, RequestID / ErrorCode / ErrorMessage as message attributes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from botocore.config import Config as BotoConfig

from infra import redrive
from tests.infra.cli import make, module, offline_env, refused_port
from tests.standins import LambdaStandIn

PREFIX = "ws-proxy-dev"
SECRET = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2VjcmV0LXNpZ25hdHVyZS1vZi1hbGljZQ"
DELIVER = {"connection_id": "Zx_1aBcDeFg=", "channel": "1", "endpoint": "https://x/y", "frames": "eJzLSM3J"}
PUSH = {
    "channel": {"booking_id": "1"},
    "connection_type": "booking",
    "payload": {"type": "status", "t": SECRET},
}
CHUNK = {"chunk": {"channel": "1", "endpoint": "https://x/y", "connection_ids": ["a", "b"], "frames": "eJw"}}
UNKNOWN = {"hello": "world", "token": SECRET}


class Lambdas(LambdaStandIn):
    """The Invoke API with functions that do not exist and functions whose service fails."""

    def __init__(self) -> None:
        super().__init__()
        self.missing: set[str] = set()
        self.failing: set[str] = set()

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        parts = path.split("/")
        name = unquote(parts[3]) if len(parts) > 3 else ""
        if name in self.missing:
            error = {"x-amzn-ErrorType": "ResourceNotFoundException"}
            return 404, {"Type": "User", "Message": f"Function not found: {name}"}, error
        if name in self.failing:
            return 500, {"Message": "ServiceException"}, {"x-amzn-ErrorType": "ServiceException"}
        return super().handle(method, path, headers, body)


@pytest.fixture
def lambdas() -> Iterator[Lambdas]:
    server = Lambdas()
    server.start()
    yield server
    server.stop()


def client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=BotoConfig(retries={"total_max_attempts": 1}),
    )


@pytest.fixture
def sqs(moto_endpoint: str) -> Any:
    return client("sqs", moto_endpoint)


@pytest.fixture
def queue(sqs: Any) -> Iterator[str]:
    name = f"{PREFIX}-websocket-api-async-dlq"
    url = str(sqs.create_queue(QueueName=f"{uuid.uuid4().hex[:8]}-{name}")["QueueUrl"])
    yield url
    sqs.delete_queue(QueueUrl=url)


def fail(sqs: Any, queue: str, event: Any, message: str = "Task timed out after 30.00 seconds") -> None:
    """What Lambda sends to a dead-letter queue after the last attempt."""
    sqs.send_message(
        QueueUrl=queue,
        MessageBody=event if isinstance(event, str) else json.dumps(event),
        MessageAttributes={
            "RequestID": {"DataType": "String", "StringValue": str(uuid.uuid4())},
            "ErrorCode": {"DataType": "Number", "StringValue": "200"},
            "ErrorMessage": {"DataType": "String", "StringValue": message},
        },
    )


def bodies_left(sqs: Any, queue: str) -> list[Any]:
    """Every message still in the queue (visible now), then made visible again."""
    found: list[Any] = []
    receipts = []
    while True:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=30)
        if not got.get("Messages"):
            break
        for message in got["Messages"]:
            found.append(json.loads(message["Body"]))
            receipts.append(message["ReceiptHandle"])
    for receipt in receipts:
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=receipt, VisibilityTimeout=0)
    return found


def run(sqs: Any, lambdas: Lambdas, queue: str, **options: Any) -> redrive.Summary:
    # moto answers at once: no long polling needed (the command waits up to 2 s on SQS)
    return redrive.redrive(
        sqs, client("lambda", lambdas.url), queue, prefix=PREFIX, wait_seconds=0, **options
    )


def fill(sqs: Any, queue: str) -> None:
    fail(sqs, queue, DELIVER)
    fail(sqs, queue, PUSH, f"Unhandled: token {SECRET} rejected\nsecond line")
    fail(sqs, queue, CHUNK)
    fail(sqs, queue, UNKNOWN)


def test_a_dry_run_lists_every_message_without_secrets_and_changes_nothing(
    sqs: Any, lambdas: Lambdas, queue: str
) -> None:
    fill(sqs, queue)
    summary = run(sqs, lambdas, queue, dry_run=True)
    assert (summary.seen, summary.redriven, summary.unknown, summary.failed) == (4, 0, 1, 0)
    assert lambdas.invocations == []
    text = "\n".join(summary.lines)
    assert f"-> {PREFIX}-deliver [by shape]" in text
    assert f"-> {PREFIX}-push [by shape]" in text
    assert f"-> {PREFIX}-fanout (else {PREFIX}-push) [by shape]" in text
    assert "UNKNOWN function" in text
    assert "Task timed out after 30.00 seconds" in text
    assert "[masked]" in text
    for secret in (SECRET, "eJzLSM3J", "Zx_1aBcDeFg=", "world", "status", "\nsecond line"):
        assert secret not in text, secret
    # Everything is still there, and visible at once (not after the run's hold).
    assert sorted(map(json.dumps, bodies_left(sqs, queue))) == sorted(
        map(json.dumps, [DELIVER, PUSH, CHUNK, UNKNOWN])
    )
    assert not summary.ok  # an unknown message needs a decision (--function) before a real run


def test_a_redrive_invokes_each_event_asynchronously_and_deletes_only_what_lambda_accepted(
    sqs: Any, lambdas: Lambdas, queue: str
) -> None:
    fill(sqs, queue)
    lambdas.missing = {f"{PREFIX}-fanout"}  # a deployment from before the fanout function
    summary = run(sqs, lambdas, queue)
    assert (summary.seen, summary.redriven, summary.unknown, summary.failed) == (4, 3, 1, 0)
    invoked = sorted((name, kind, json.dumps(payload)) for name, kind, payload in lambdas.invocations)
    assert invoked == sorted(
        [
            (f"{PREFIX}-deliver", "Event", json.dumps(DELIVER)),
            (f"{PREFIX}-push", "Event", json.dumps(PUSH)),
            (f"{PREFIX}-push", "Event", json.dumps(CHUNK)),
        ]
    )
    assert f"{PREFIX}-fanout: ResourceNotFoundException; {PREFIX}-push: accepted" in "\n".join(summary.lines)
    assert bodies_left(sqs, queue) == [UNKNOWN]


def test_chunks_go_to_fanout_where_it_exists(sqs: Any, lambdas: Lambdas, queue: str) -> None:
    fail(sqs, queue, CHUNK)
    assert run(sqs, lambdas, queue).ok
    assert [(n, p) for n, _, p in lambdas.invocations] == [(f"{PREFIX}-fanout", CHUNK)]
    assert bodies_left(sqs, queue) == []


def test_a_failed_invoke_keeps_the_message_for_the_next_run(sqs: Any, lambdas: Lambdas, queue: str) -> None:
    fail(sqs, queue, PUSH)
    fail(sqs, queue, DELIVER)
    lambdas.failing = {f"{PREFIX}-push"}
    summary = run(sqs, lambdas, queue)
    assert (summary.redriven, summary.failed) == (1, 1)
    assert not summary.ok
    assert f"{PREFIX}-push: ServiceException" in "\n".join(summary.lines)
    assert bodies_left(sqs, queue) == [PUSH]
    lambdas.failing = set()
    assert run(sqs, lambdas, queue).ok
    assert bodies_left(sqs, queue) == []
    assert [p for n, _, p in lambdas.invocations if n.endswith("-push")] == [PUSH]


def test_max_handles_that_many_and_leaves_the_rest_visible(sqs: Any, lambdas: Lambdas, queue: str) -> None:
    for index in range(5):
        fail(sqs, queue, {**DELIVER, "connection_id": f"c{index}"})
    summary = run(sqs, lambdas, queue, limit=2)
    assert (summary.seen, summary.redriven) == (2, 2)
    assert len(lambdas.invocations) == 2
    assert len(bodies_left(sqs, queue)) == 3


def test_function_overrides_the_shape_even_for_unknown_events(sqs: Any, lambdas: Lambdas, queue: str) -> None:
    fail(sqs, queue, UNKNOWN)
    fail(sqs, queue, DELIVER)
    summary = run(sqs, lambdas, queue, function=f"{PREFIX}-push")
    assert summary.ok
    assert summary.redriven == 2
    assert {n for n, _, _ in lambdas.invocations} == {f"{PREFIX}-push"}


def test_a_body_that_is_not_a_json_object_is_never_invoked(sqs: Any, lambdas: Lambdas, queue: str) -> None:
    fail(sqs, queue, "not json at all")
    fail(sqs, queue, "[1, 2]")
    summary = run(sqs, lambdas, queue, function=f"{PREFIX}-push")
    assert (summary.unknown, summary.redriven) == (2, 0)
    assert lambdas.invocations == []


def test_main_derives_the_prefix_from_the_queue_and_exits_non_zero_on_leftovers(
    sqs: Any, lambdas: Lambdas, queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fail(sqs, queue, DELIVER)
    lambda_client = client("lambda", lambdas.url)
    queue_prefix = queue.rsplit("/", 1)[1].removesuffix(redrive.QUEUE_SUFFIX)
    assert redrive.main(["--queue-url", queue, "--dry-run"], sqs, lambda_client) == 0
    assert f"-> {queue_prefix}-deliver" in capsys.readouterr().out
    assert redrive.main(["--queue-url", queue, "--prefix", PREFIX], sqs, lambda_client) == 0
    assert [n for n, _, _ in lambdas.invocations] == [f"{PREFIX}-deliver"]
    fail(sqs, queue, UNKNOWN)
    assert redrive.main(["--queue-url", queue, "--prefix", PREFIX], sqs, lambda_client) == 1
    with pytest.raises(SystemExit):
        redrive.main(["--queue-url", "https://sqs.eu-west-1.amazonaws.com/1/other-queue"], sqs, lambda_client)
    with pytest.raises(SystemExit):
        redrive.main(["--queue-url", queue, "--max", "0"], sqs, lambda_client)


# -- the rules on their own -----------------------------------------------------------------


def test_the_shape_rules() -> None:
    assert redrive.classify(DELIVER) == ["deliver"]
    presence = {"connection_id": "A=", "user_id": "u", "online": True, "channels": []}
    assert redrive.classify({"presence": presence}) == ["deliver"]
    assert redrive.classify(PUSH) == ["push"]
    assert redrive.classify({"channel": {"feed": True}, "payload": {}}) == ["push"]
    assert redrive.classify(CHUNK) == ["fanout", "push"]
    assert redrive.classify({"channel": "booking#1", "connection_ids": ["a"], "frames": "x"}) == [
        "fanout",
        "push",
    ]
    others: list[Any] = [UNKNOWN, [], "x", None, {"connection_id": 5, "frames": "x"}, {"connection_id": "a"}]
    for other in others:
        assert redrive.classify(other) == [], other


def test_the_sender_names_the_function_only_when_it_is_one_of_this_deployment() -> None:
    assert redrive.sender_function(f"AROAEXAMPLE:{PREFIX}-push", PREFIX) == f"{PREFIX}-push"
    assert redrive.sender_function(f"AROAEXAMPLE:{PREFIX}-fanout", PREFIX) == f"{PREFIX}-fanout"
    assert redrive.sender_function("AROAEXAMPLE:ws-proxy-prod-push", PREFIX) is None
    assert redrive.sender_function(f"AROAEXAMPLE:{PREFIX}-websocket_message", PREFIX) is None
    assert redrive.sender_function("AIDAEXAMPLE", PREFIX) is None
    assert redrive.sender_function(None, PREFIX) is None


def test_the_sender_wins_over_the_shape() -> None:
    message = {
        "MessageId": "m1",
        "ReceiptHandle": "r1",
        "Body": json.dumps(CHUNK),
        "Attributes": {
            "SenderId": f"AROAEXAMPLE:{PREFIX}-push",
            "SentTimestamp": "1000",
            "ApproximateReceiveCount": "2",
        },
    }
    item = redrive.read_message(message, PREFIX, None, now=3601.0)
    assert (item.candidates, item.source, item.receives) == ([f"{PREFIX}-push"], "sender", 2)
    assert item.age_seconds == pytest.approx(3600.0)


def test_the_prefix_comes_from_the_queue_name() -> None:
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/ws-proxy-prod-websocket-api-async-dlq"
    assert redrive.prefix_from_queue_url(url) == "ws-proxy-prod"
    assert redrive.region_of(url) == "eu-west-1"
    for bad in ("https://sqs.eu-west-1.amazonaws.com/1/queue", "http://x/1/-websocket-api-async-dlq"):
        with pytest.raises(redrive.RedriveError, match="--prefix"):
            redrive.prefix_from_queue_url(bad)


def test_error_messages_are_one_short_line_with_tokens_masked() -> None:
    masked = redrive.mask(f"bad token {SECRET}\r\nand {'A' * 40} and a very long tail " + "x " * 200)
    assert SECRET not in masked
    assert "A" * 40 not in masked
    assert "\n" not in masked
    assert "\r" not in masked
    assert len(masked) <= redrive.ERROR_CHARS
    assert redrive.mask("Task timed out after 30.00 seconds") == "Task timed out after 30.00 seconds"


# -- the region, and AWS's errors, as one line (offline: tests/infra/cli.py) -------------------


def test_make_redrive_takes_the_region_from_the_queue_url_else_stops_with_one_line(tmp_path: Path) -> None:
    queue_name = f"{PREFIX}{redrive.QUEUE_SUFFIX}"
    with refused_port() as port:
        env = offline_env(tmp_path, port, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        no_region = make("redrive", env, f"QUEUE_URL=https://vpce-0a1b.sqs.example.internal/1/{queue_name}")
        by_url = make("redrive", env, f"QUEUE_URL=https://sqs.eu-west-1.amazonaws.com/1/{queue_name}")
    assert no_region.code != 0
    assert "Traceback" not in no_region.err
    assert no_region.own_lines == [
        (
            "error: no AWS region for make redrive: boto3 and chalice read AWS_DEFAULT_REGION "
            "(or the region of AWS_PROFILE's config): e.g. AWS_DEFAULT_REGION=eu-west-1 make redrive"
        )
    ]
    # The queue URL names its region: SQS is asked (here a refused port), and that fails in one line.
    assert by_url.code != 0
    assert "Traceback" not in by_url.err
    assert by_url.own_lines == [
        (
            f"error: https://sqs.eu-west-1.amazonaws.com/1/{queue_name}: EndpointConnectionError: "
            f'Could not connect to the endpoint URL: "http://127.0.0.1:{port}/"'
        )
    ]


def test_an_unknown_profile_is_one_line_too(tmp_path: Path) -> None:
    url = f"https://sqs.eu-west-1.amazonaws.com/1/{PREFIX}{redrive.QUEUE_SUFFIX}"
    with refused_port() as port:
        result = make("redrive", offline_env(tmp_path, port, AWS_PROFILE="nope"), f"QUEUE_URL={url}")
    assert "Traceback" not in result.err
    assert result.own_lines == [
        f"error: {url}: ProfileNotFound: The config profile (nope) could not be found"
    ]


def test_the_redrive_command_without_a_region_exits_1_with_one_line(tmp_path: Path) -> None:
    with refused_port() as port:
        args = ("--queue-url", "https://x.example/1/q", "--prefix", PREFIX)
        result = module("infra.redrive", offline_env(tmp_path, port), *args)
    assert result.code == 1
    assert result.out == ""
    assert len(result.err.splitlines()) == 1
    assert result.err.startswith("error: no AWS region for make redrive:")


def test_the_region_comes_from_either_form_of_queue_url() -> None:
    assert redrive.region_of("https://sqs.eu-central-1.amazonaws.com/123/q") == "eu-central-1"
    assert redrive.region_of("https://ap-south-1.queue.amazonaws.com/123/q") == "ap-south-1"
    assert redrive.region_of("https://sqs.cn-north-1.amazonaws.com.cn/123/q") == "cn-north-1"
    assert redrive.region_of("https://vpce-1.sqs.eu-west-1.vpce.amazonaws.com/123/q") is None
    assert redrive.region_of("http://127.0.0.1:5000/123/q") is None
