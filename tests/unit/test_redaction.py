"""Library loggers that print request and response content are redacted at every level."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from chalicelib.redaction import CONTENT_LOGGERS, REDACTED, RedactArguments, redact_library_logs

TOKEN = "tok-5f1c2e-SECRET"
SESSION = "session-9d8e7f-SECRET"


class _Raw(io.BytesIO):
    def stream(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        yield self.getvalue()


@pytest.fixture
def debug_text() -> Iterator[io.StringIO]:
    """Every record of botocore and urllib3 at DEBUG, through a handler on botocore itself."""
    redact_library_logs()
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    names = ["botocore", "urllib3", *CONTENT_LOGGERS]
    saved = [(n, logging.getLogger(n).level) for n in names]
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    logging.getLogger("botocore").addHandler(handler)
    try:
        yield buffer
    finally:
        logging.getLogger("botocore").removeHandler(handler)
        for name, level in saved:
            logging.getLogger(name).setLevel(level)


def test_dynamodb_request_response_and_signature_are_redacted_at_debug(debug_text: io.StringIO) -> None:
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret-key-SECRET",
        aws_session_token=SESSION,
    )
    body = json.dumps({"Items": [{"token": {"S": TOKEN}}], "Count": 1}).encode()

    def answer(request: Any, **kwargs: Any) -> AWSResponse:
        return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.0"}, _Raw(body))

    client.meta.events.register("before-send.dynamodb.Query", answer)
    items = client.query(
        TableName="t",
        KeyConditionExpression="#t = :t",
        ExpressionAttributeNames={"#t": "token"},
        ExpressionAttributeValues={":t": {"S": TOKEN}},
    )["Items"]
    assert items == [{"token": {"S": TOKEN}}]  # the call really carried the token both ways
    text = debug_text.getvalue()
    assert "botocore.endpoint Making request for OperationModel(name=Query) with params: [redacted]" in text
    assert "botocore.parsers Response body:" in text
    assert "botocore.auth CanonicalRequest:" in text
    assert TOKEN not in text
    assert SESSION not in text
    assert "secret-key" not in text


def test_the_filter_keeps_numbers_and_replaces_text_and_objects() -> None:
    record = logging.LogRecord("botocore.x", logging.DEBUG, __file__, 1, "%s %d %r", ("a", 3, {"b": 1}), None)
    assert RedactArguments().filter(record) is True
    assert record.getMessage() == f"{REDACTED} 3 '{REDACTED}'"
    named = logging.LogRecord(
        "botocore.x", logging.DEBUG, __file__, 1, "%(a)s %(n)s", ({"a": "x", "n": 2},), None
    )
    RedactArguments().filter(named)
    assert named.getMessage() == f"{REDACTED} 2"
    raw = logging.LogRecord("botocore.x", logging.DEBUG, __file__, 1, {"token": TOKEN}, (), None)
    RedactArguments().filter(raw)
    assert raw.getMessage() == REDACTED


def test_installing_twice_adds_one_filter() -> None:
    redact_library_logs()
    redact_library_logs()
    for name in CONTENT_LOGGERS:
        assert sum(isinstance(f, RedactArguments) for f in logging.getLogger(name).filters) == 1
