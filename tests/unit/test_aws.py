"""The thin AWS clients against botocore: the same requests on the wire, the same answers from moto."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib import aws
from chalicelib.deadline import Deadline
from chalicelib.signing import Credentials
from chalicelib.transport import Transport
from tests.harness import moto_client, moto_registry_client
from tests.standins import Answer, DynamoDbStandIn, LambdaStandIn, StandIn

KEYS = (
    "AKIDEXAMPLE",
    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "IQoJb3JpZ2luX2VjE//////////wEaCXVz+token=",
)
TABLE = "connections"
KEY = {"booking_id": {"S": "booking#1"}, "connection_id": {"S": "A1="}}
ITEM = {**KEY, "token": {"S": "tök"}, "ttl": {"N": "1800000000"}, "connection_type": {"S": "chat"}}
#: One call of each operation the registry makes, with the parameters it passes.
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("put_item", {"Item": ITEM, "TableName": TABLE}),
    ("delete_item", {"Key": KEY, "TableName": TABLE}),
    (
        "delete_item",
        {
            "Key": KEY,
            "ConditionExpression": "attribute_not_exists(#c) OR #c < :before",
            "ExpressionAttributeNames": {"#c": "created_at"},
            "ExpressionAttributeValues": {":before": {"N": "1800000000"}},
            "TableName": TABLE,
        },
    ),
    ("get_item", {"Key": KEY, "ConsistentRead": True, "TableName": TABLE}),
    (
        "update_item",
        {
            "Key": KEY,
            "UpdateExpression": "SET #tok = :tok",
            "ConditionExpression": "attribute_exists(#id)",
            "ExpressionAttributeNames": {"#tok": "token", "#id": "connection_id"},
            "ExpressionAttributeValues": {":tok": {"S": "new"}},
            "TableName": TABLE,
        },
    ),
    (
        "query",
        {
            "IndexName": "connection_id-index",
            "KeyConditionExpression": "#c = :c",
            "ExpressionAttributeNames": {"#c": "connection_id"},
            "ExpressionAttributeValues": {":c": {"S": "A1="}},
            "TableName": TABLE,
        },
    ),
    (
        "query",
        {
            "KeyConditionExpression": "#p = :p",
            "FilterExpression": "#t > :now AND #ct = :ct",
            "ProjectionExpression": "#id",
            "ExpressionAttributeNames": {
                "#p": "booking_id",
                "#t": "ttl",
                "#id": "connection_id",
                "#ct": "connection_type",
            },
            "ExpressionAttributeValues": {":p": {"S": "booking#1"}, ":now": {"N": "1"}, ":ct": {"S": "chat"}},
            "Limit": 5,
            "ExclusiveStartKey": KEY,
            "TableName": TABLE,
        },
    ),
    (
        "batch_get_item",
        {
            "RequestItems": {
                TABLE: {
                    "Keys": [KEY, {"booking_id": {"S": "booking#1"}, "connection_id": {"S": "B1="}}],
                    "ProjectionExpression": "#id, #e, #t",
                    "ExpressionAttributeNames": {"#id": "connection_id", "#e": "endpoint", "#t": "ttl"},
                }
            }
        },
    ),
    # a found connection's token, read from its own item
    (
        "get_item",
        {
            "Key": KEY,
            "ConsistentRead": True,
            "ProjectionExpression": "#tok, #t",
            "ExpressionAttributeNames": {"#tok": "token", "#t": "ttl"},
            "TableName": TABLE,
        },
    ),
    # the feed counted up to its cap
    (
        "query",
        {
            "KeyConditionExpression": "#p = :p",
            "FilterExpression": "#t > :now",
            "Select": "COUNT",
            "ExpressionAttributeNames": {"#p": "booking_id", "#t": "ttl"},
            "ExpressionAttributeValues": {":p": {"S": "feed#"}, ":now": {"N": "1800000000"}},
            "Limit": 100,
            "ExclusiveStartKey": KEY,
            "TableName": TABLE,
        },
    ),
    # a channel's members as one type, read consistently (presence)
    (
        "query",
        {
            "KeyConditionExpression": "#p = :p",
            "FilterExpression": "#t > :now AND "
            "(contains(#ty, :ct) OR (attribute_not_exists(#ty) AND #ct = :ct))",
            "ProjectionExpression": "#id, #u",
            "ExpressionAttributeNames": {
                "#p": "booking_id",
                "#t": "ttl",
                "#id": "connection_id",
                "#u": "user_id",
                "#ct": "connection_type",
                "#ty": "types",
            },
            "ExpressionAttributeValues": {":p": {"S": "booking#1"}, ":now": {"N": "1"}, ":ct": {"S": "chat"}},
            "ConsistentRead": True,
            "TableName": TABLE,
        },
    ),
    # a socket's own item gains a type (a string set)
    (
        "update_item",
        {
            "Key": KEY,
            "UpdateExpression": "ADD #ty :ty",
            "ConditionExpression": "attribute_exists(#id) AND attribute_not_exists(#h)",
            "ExpressionAttributeNames": {"#ty": "types", "#id": "connection_id", "#h": "home"},
            "ExpressionAttributeValues": {":ty": {"SS": ["booking", "chat"]}},
            "TableName": TABLE,
        },
    ),
    # a subscription item written or extended
    (
        "update_item",
        {
            "Key": KEY,
            "UpdateExpression": "SET #ct = if_not_exists(#ct, :ct), #c = if_not_exists(#c, :c), #t = :t, "
            "#h = :h, #user_id = :user_id ADD #ty :ty",
            "ConditionExpression": "attribute_not_exists(#id) OR attribute_exists(#h)",
            "ExpressionAttributeNames": {
                "#ty": "types",
                "#id": "connection_id",
                "#ct": "connection_type",
                "#c": "created_at",
                "#t": "ttl",
                "#h": "home",
                "#user_id": "user_id",
            },
            "ExpressionAttributeValues": {
                ":ty": {"SS": ["chat"]},
                ":ct": {"S": "chat"},
                ":c": {"N": "1800000000"},
                ":t": {"N": "1800086400"},
                ":h": {"S": "user#u"},
                ":user_id": {"S": "u"},
            },
            "TableName": TABLE,
        },
    ),
    # a type taken out of a set, the item as it was answered
    (
        "update_item",
        {
            "Key": KEY,
            "UpdateExpression": "DELETE #ty :ty",
            "ConditionExpression": "attribute_exists(#id) AND contains(#ty, :one)",
            "ExpressionAttributeNames": {"#ty": "types", "#id": "connection_id"},
            "ExpressionAttributeValues": {":ty": {"SS": ["chat"]}, ":one": {"S": "chat"}},
            "ReturnValues": "ALL_OLD",
            "TableName": TABLE,
        },
    ),
    (
        "delete_item",
        {
            "Key": KEY,
            "ConditionExpression": "attribute_not_exists(#ty)",
            "ExpressionAttributeNames": {"#ty": "types"},
            "TableName": TABLE,
        },
    ),
    # a socket's items removed, a batch at a time
    (
        "batch_write_item",
        {
            "RequestItems": {
                TABLE: [
                    {"DeleteRequest": {"Key": KEY}},
                    {"DeleteRequest": {"Key": {**KEY, "booking_id": {"S": "user#u"}}}},
                ]
            }
        },
    ),
]


class Recording(StandIn):
    """Records each request as it arrived; answers ``{}`` (202 with no body for an invoke)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        self.requests.append((method, path, headers, body))
        return (202, b"", {}) if "/invocations" in path else (200, {}, {})


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recording]:
    for name, value in zip(
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"), KEYS, strict=True
    ):
        monkeypatch.setenv(name, value)
    server = Recording().start()
    yield server
    server.stop()


def botocore_client(service: str, url: str) -> Any:
    return boto3.client(
        service, endpoint_url=url, region_name="eu-west-1", config=Config(retries={"max_attempts": 0})
    )


def same_request(
    theirs: tuple[str, str, dict[str, str], bytes], ours: tuple[str, str, dict[str, str], bytes]
) -> None:
    """Method, path, body and every signed header (the signature with them) the same."""
    assert ours[:2] == theirs[:2]
    assert ours[3] == theirs[3]
    signed = theirs[2]["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    for name in signed:
        header = next(k for k in theirs[2] if k.lower() == name)
        assert ours[2][header] == theirs[2][header], name
    assert ours[2]["Authorization"] == theirs[2]["Authorization"]


@pytest.mark.parametrize(("operation", "params"), CALLS, ids=[f"{op}-{i}" for i, (op, _) in enumerate(CALLS)])
def test_each_dynamodb_request_is_botocores_byte_for_byte(
    recording: Recording, operation: str, params: dict[str, Any]
) -> None:
    botocore = botocore_client("dynamodb", recording.url)
    getattr(botocore, operation)(**params)
    theirs = recording.requests[-1]
    transport = Transport(1)
    ours = aws.DynamoDB(
        recording.url,
        "eu-west-1",
        aws.credentials_source(),
        transport,
        amz_date=lambda: theirs[2]["X-Amz-Date"],
    )
    try:
        assert ours.call(botocore.meta.method_to_api_mapping[operation], params) == {}
    finally:
        transport.close()
    same_request(theirs, recording.requests[-1])
    assert (
        recording.requests[-1][2]["Content-Type"] == theirs[2]["Content-Type"] == "application/x-amz-json-1.0"
    )


@pytest.mark.parametrize("name", ["ws-proxy-dev-fanout", "ws-proxy-dev-deliver"])
def test_the_lambda_invoke_is_botocores_byte_for_byte(recording: Recording, name: str) -> None:
    payload = {"chunk": {"channel": "booking#1", "connection_ids": ["A="], "frames": "eJw="}}
    answer = botocore_client("lambda", recording.url).invoke(
        FunctionName=name,
        InvocationType="Event",
        Payload=b'{"chunk":{"channel":"booking#1","connection_ids":["A="],"frames":"eJw="}}',
    )
    assert answer["StatusCode"] == 202
    theirs = recording.requests[-1]
    transport = Transport(1)
    ours = aws.LambdaClient(
        recording.url,
        "eu-west-1",
        aws.credentials_source(),
        transport,
        amz_date=lambda: theirs[2]["X-Amz-Date"],
    )
    try:
        ours.invoke_async(name, payload)  # answered 202, or it raises
    finally:
        transport.close()
    same_request(theirs, recording.requests[-1])


@pytest.fixture
def table(moto_endpoint: str) -> Iterator[str]:
    from infra.table import ensure_table

    name = f"aws-{uuid.uuid4().hex[:8]}"
    ensure_table(moto_client(moto_endpoint), name)
    yield name
    moto_client(moto_endpoint).delete_table(TableName=name)


def test_answers_from_moto_are_botocores_parsed_answers(moto_endpoint: str, table: str) -> None:
    theirs, ours = moto_client(moto_endpoint), moto_registry_client(moto_endpoint)
    for i in range(3):
        key = {"booking_id": {"S": "booking#1"}, "connection_id": {"S": f"C{i}="}}
        theirs.put_item(
            TableName=table, Item={**key, "ttl": {"N": "1800000000"}, "n": {"N": "1.50"}, "b": {"BOOL": True}}
        )
    calls = [
        (operation, {**params, "TableName": table} if "TableName" in params else params)
        for operation, params in CALLS
        if operation in ("get_item", "query")
    ]
    calls += [
        (
            "get_item",
            {"TableName": table, "Key": {"booking_id": {"S": "booking#1"}, "connection_id": {"S": "C1="}}},
        ),
        (
            "query",
            {
                "TableName": table,
                "KeyConditionExpression": "booking_id = :p",
                "ExpressionAttributeValues": {":p": {"S": "booking#1"}},
                "Limit": 2,
            },
        ),
        (
            "batch_get_item",
            {
                "RequestItems": {
                    table: {
                        "Keys": [
                            {"booking_id": {"S": "booking#1"}, "connection_id": {"S": f"C{i}="}}
                            for i in range(3)
                        ]
                    }
                }
            },
        ),
    ]
    for operation, params in calls:
        expected = getattr(theirs, operation)(**params)
        expected.pop("ResponseMetadata")
        assert ours.call(theirs.meta.method_to_api_mapping[operation], params) == expected, operation


def test_set_counts_and_batch_writes_answer_as_botocore_parses_them(moto_endpoint: str, table: str) -> None:
    """Each call is one both clients can repeat with the same answer: a string set's ADD and
    DELETE (the item as it is after), a consistent COUNT, a consistent projected read, deletes
    in a batch."""
    theirs, ours = moto_client(moto_endpoint), moto_registry_client(moto_endpoint)
    home = {"booking_id": {"S": "user#u"}, "connection_id": {"S": "S1="}}
    theirs.put_item(TableName=table, Item={**home, "ttl": {"N": "1800000000"}, "token": {"S": "t"}})
    for i in range(3):
        key = {"booking_id": {"S": "booking#9"}, "connection_id": {"S": f"S{i}="}}
        theirs.put_item(TableName=table, Item={**key, "ttl": {"N": "1800000000"}, "home": {"S": "user#u"}})
    sub = {"booking_id": {"S": "booking#9"}, "connection_id": {"S": "S1="}}
    calls: list[tuple[str, dict[str, Any]]] = [
        (
            "update_item",
            {
                "TableName": table,
                "Key": sub,
                "UpdateExpression": "ADD #ty :ty",
                "ExpressionAttributeNames": {"#ty": "types"},
                "ExpressionAttributeValues": {":ty": {"SS": ["chat", "booking"]}},
                "ReturnValues": "ALL_NEW",
            },
        ),
        (
            "update_item",
            {
                "TableName": table,
                "Key": sub,
                "UpdateExpression": "DELETE #ty :ty",
                "ExpressionAttributeNames": {"#ty": "types"},
                "ExpressionAttributeValues": {":ty": {"SS": ["booking"]}},
                "ReturnValues": "ALL_NEW",
            },
        ),
        (
            "get_item",
            {
                "TableName": table,
                "Key": home,
                "ConsistentRead": True,
                "ProjectionExpression": "#tok, #t",
                "ExpressionAttributeNames": {"#tok": "token", "#t": "ttl"},
            },
        ),
        (
            "query",
            {
                "TableName": table,
                "KeyConditionExpression": "#p = :p",
                "FilterExpression": "#t > :now",
                "Select": "COUNT",
                "ExpressionAttributeNames": {"#p": "booking_id", "#t": "ttl"},
                "ExpressionAttributeValues": {":p": {"S": "booking#9"}, ":now": {"N": "1"}},
                "Limit": 2,
                "ConsistentRead": True,
            },
        ),
        (
            "query",
            {
                "TableName": table,
                "IndexName": "connection_id-index",
                "KeyConditionExpression": "#c = :c",
                "ExpressionAttributeNames": {"#c": "connection_id"},
                "ExpressionAttributeValues": {":c": {"S": "S1="}},
            },
        ),
        (
            "batch_write_item",
            {"RequestItems": {table: [{"DeleteRequest": {"Key": sub}}, {"DeleteRequest": {"Key": home}}]}},
        ),
    ]
    for operation, params in calls:
        expected = getattr(theirs, operation)(**params)
        expected.pop("ResponseMetadata")
        assert ours.call(theirs.meta.method_to_api_mapping[operation], params) == expected, operation
    assert "Item" not in ours.call(
        "GetItem", {"TableName": table, "Key": home}
    )  # the batch's deletes were made


def test_a_failed_condition_surfaces_with_dynamodbs_code(moto_endpoint: str, table: str) -> None:
    condition: dict[str, Any] = {
        "TableName": table,
        "Key": KEY,
        "ConditionExpression": "attribute_exists(connection_id)",
    }
    with pytest.raises(ClientError) as theirs:
        moto_client(moto_endpoint).delete_item(**condition)
    with pytest.raises(aws.AwsError) as ours:
        moto_registry_client(moto_endpoint).call("DeleteItem", condition)
    assert ours.value.code == theirs.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert ours.value.status == 400
    assert not ours.value.retryable


def test_credentials_and_endpoint_come_from_the_environment() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "AK",
        "AWS_SECRET_ACCESS_KEY": "SK",
        "AWS_SESSION_TOKEN": "TK",
        "AWS_REGION": "eu-west-1",
    }
    assert aws.credentials_source(env)() == Credentials("AK", "SK", "TK")
    assert aws.region(env) == "eu-west-1"
    assert aws.region({"AWS_DEFAULT_REGION": "us-west-2"}) == "us-west-2"
    assert aws.endpoint("dynamodb", "eu-west-1", {}) == "https://dynamodb.eu-west-1.amazonaws.com"
    assert aws.endpoint("dynamodb", "eu-west-1", {"AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:8002"}) == (
        "http://127.0.0.1:8002"
    )
    assert (
        aws.endpoint("lambda", "eu-west-1", {"AWS_ENDPOINT_URL": "http://127.0.0.1:3001"})
        == "http://127.0.0.1:3001"
    )


def test_no_attempt_starts_without_time_left(recording: Recording) -> None:
    transport = Transport(1)
    client = aws.DynamoDB(recording.url, "eu-west-1", aws.credentials_source(), transport)
    try:
        with pytest.raises(aws.AwsError) as info:
            client.call("Query", {"TableName": TABLE}, Deadline.after(0))
    finally:
        transport.close()
    assert info.value.code == "DeadlineExceeded"
    assert recording.requests == []


class Garbled(StandIn):
    """Answers every request ``status`` with ``body`` as it is (not necessarily AWS's JSON object)."""

    def __init__(self, body: bytes, status: int = 200) -> None:
        super().__init__()
        self.body, self.status = body, status
        self.requests = 0

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        self.requests += 1
        return (self.status, self.body, {"Content-Type": "application/x-amz-json-1.0"})


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"[]", b'"item"', b"{"])
def test_an_answer_that_is_not_a_json_object_is_a_failed_call(recording: Recording, body: bytes) -> None:
    server = Garbled(body).start()
    transport = Transport(1)
    client = aws.DynamoDB(server.url, "eu-west-1", aws.credentials_source(), transport)
    try:
        with pytest.raises(aws.AwsError) as info:
            client.call("GetItem", {"TableName": TABLE, "Key": KEY}, Deadline.after(5))
    finally:
        transport.close()
        server.stop()
    assert (info.value.code, info.value.status) == ("MalformedAnswer", 200)


@pytest.mark.parametrize(
    ("status", "body"),
    [(503, b"<html>Service Unavailable</html>"), (502, b"{"), (400, b"[]"), (400, b'"busy"')],
    ids=["html", "cut-json", "json-list", "json-string"],
)
def test_an_error_answer_that_is_not_a_json_object_is_named_by_its_status(
    recording: Recording, status: int, body: bytes
) -> None:
    """As a load balancer's error page in front of the endpoint: a failed call, retried or not by
    its status, never a crash on its body."""
    server = Garbled(body, status).start()
    transport = Transport(1)
    client = aws.DynamoDB(server.url, "eu-west-1", aws.credentials_source(), transport)
    try:
        with pytest.raises(aws.AwsError) as info:
            client.call("GetItem", {"TableName": TABLE, "Key": KEY}, Deadline.after(5))
    finally:
        transport.close()
        server.stop()
    assert (info.value.code, info.value.status, info.value.message) == (f"HTTP{status}", status, "")
    assert info.value.retryable is (status >= 500)


@pytest.mark.parametrize("status", [200, 204])
def test_an_invoke_answered_other_than_202_is_a_failed_invoke(recording: Recording, status: int) -> None:
    """Only 202 says Lambda queued the event; any other 2xx is not taken for it, and not retried."""
    server = Garbled(b"", status).start()
    transport = Transport(1)
    client = aws.LambdaClient(server.url, "eu-west-1", aws.credentials_source(), transport, max_attempts=3)
    try:
        with pytest.raises(RuntimeError, match=f"asynchronous invoke answered {status}"):
            client.invoke_async("ws-proxy-dev-fanout", {"chunk": {}})
    finally:
        transport.close()
        server.stop()
    assert server.requests == 1


class FakeClock:
    """A monotonic clock that moves only by the pauses it is asked to sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def test_a_retry_whose_pause_would_outlast_the_deadline_fails_at_once_with_the_last_error() -> None:
    server = DynamoDbStandIn().start()
    server.throttle = 100
    clock = FakeClock()
    transport = Transport(1)
    client = aws.DynamoDB(
        server.url,
        "us-east-1",
        lambda: Credentials("AKID", "secret", None),
        transport,
        max_attempts=10,
        sleep=clock.sleep,
    )
    try:
        with pytest.raises(aws.AwsError) as info:
            client.call("Query", {"TableName": "t"}, Deadline(clock.now + 3.0, clock))
    finally:
        transport.close()
        server.stop()
    # 1.55 s of pauses leave 1.45 s: the next pause (1.6 s) would leave no attempt time, so
    # the throttling is the answer now, neither slept through nor turned into DeadlineExceeded
    assert clock.pauses == [0.05, 0.1, 0.2, 0.4, 0.8]
    assert info.value.code == "ProvisionedThroughputExceededException"
    assert server.operations == ["Query"] * 6


@pytest.fixture
def seeded() -> Iterator[None]:
    """The jitter drawn from a fixed seed (the generator's state restored afterwards)."""
    state = random.getstate()
    random.seed(20_000)
    yield
    random.setstate(state)


def test_a_failing_invoke_is_retried_after_standard_modes_pauses_then_fails(
    recording: Recording, seeded: None
) -> None:
    lambdas = LambdaStandIn().start()
    lambdas.fail = True  # 500 ServiceException
    pauses: list[float] = []
    transport = Transport(1)
    client = aws.LambdaClient(
        lambdas.url, "eu-west-1", aws.credentials_source(), transport, max_attempts=4, sleep=pauses.append
    )
    try:
        with pytest.raises(aws.AwsError) as info:
            client.invoke_async("ws-proxy-dev-deliver", {"connection_id": "A="})
    finally:
        transport.close()
        lambdas.stop()
    assert info.value.status == 500
    assert len(pauses) == 3
    assert all(0 <= pause <= cap for pause, cap in zip(pauses, (1, 2, 4), strict=True)), pauses
    assert lambdas.invocations == []


def test_standard_mode_pauses_are_full_jitter_up_to_20_seconds(seeded: None) -> None:
    """botocore's ``standard`` mode: retry n pauses anywhere from 0 to 2^(n-1) s, never above 20 s."""
    unused = Transport(1)  # no call is made
    client = aws.LambdaClient("http://127.0.0.1:9", "eu-west-1", lambda: Credentials("A", "S", None), unused)
    for attempt, cap in [(1, 1.0), (3, 4.0), (5, 16.0), (6, 20.0), (12, 20.0)]:
        pauses = [client.backoff(attempt) for _ in range(500)]
        assert all(0 <= pause <= cap for pause in pauses), attempt
        assert min(pauses) < 0.05 * cap, attempt  # from nothing...
        assert max(pauses) > 0.95 * cap, attempt  # ...to the cap: the whole range is drawn


@pytest.fixture
def botocore_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An environment that names no region and no keys; botocore's files in ``tmp_path``
    (written by the test, or absent) and no instance metadata (no network)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("BOTO_CONFIG", str(tmp_path / "boto"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def test_without_the_environments_region_and_keys_the_profiles_are_used(
    botocore_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside Lambda (a developer's profile): botocore's configuration and credential chain."""
    (botocore_files / "config").write_text("[profile ops]\nregion = ap-southeast-2\n")
    (botocore_files / "credentials").write_text(
        "[ops]\naws_access_key_id = AKIDFILE\naws_secret_access_key = secretfile\naws_session_token = tok\n"
    )
    monkeypatch.setenv("AWS_PROFILE", "ops")
    assert aws.region() == "ap-southeast-2"
    assert aws.credentials_source()() == Credentials("AKIDFILE", "secretfile", "tok")


def test_with_no_region_or_credentials_anywhere_the_error_says_so(botocore_files: Path) -> None:
    with pytest.raises(ValueError, match="no AWS region: set AWS_DEFAULT_REGION"):
        aws.region()
    sign = aws.credentials_source()  # nothing found: said when a call is to be signed
    with pytest.raises(RuntimeError, match="no AWS credentials"):
        sign()
