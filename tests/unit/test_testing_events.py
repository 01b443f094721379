"""ws_proxy_testing's events have API Gateway's shapes, as Powertools and Chalice read them.

Powertools' parser models for WebSocket events (``utilities/parser/models/
apigw_websocket.py``) were written from events AWS delivered; every field they
require must be in ours, with its type.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from aws_lambda_powertools.utilities.parser.models.apigw_websocket import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
)
from chalice.app import WebsocketEvent

from ws_proxy_testing import LambdaContext, connect_event, disconnect_event, message_event
from ws_proxy_testing.events import DOMAIN, STAGE
from ws_proxy_testing.isolation import CLEARED


def test_a_connect_event_has_api_gateway_s_shape_with_the_query_and_headers() -> None:
    event = connect_event(
        "jj5wamSE_saNZy8=", {"type": "chat", "booking_id": "42"}, {"Origin": "https://x.example"}
    )
    parsed = APIGatewayWebSocketConnectEventModel.model_validate(event)
    assert parsed.request_context.connection_id == "jj5wamSE_saNZy8="
    assert (parsed.request_context.domain_name, parsed.request_context.stage) == (DOMAIN, STAGE)
    assert parsed.headers["Origin"] == "https://x.example"
    assert parsed.multi_value_headers["Origin"] == ["https://x.example"]
    assert len(base64.b64decode(parsed.headers["Sec-WebSocket-Key"])) == 16
    assert event["queryStringParameters"] == {"type": "chat", "booking_id": "42"}
    assert event["multiValueQueryStringParameters"] == {"type": ["chat"], "booking_id": ["42"]}
    assert "queryStringParameters" not in connect_event("A=")  # API Gateway omits an empty query


def test_a_message_event_carries_its_body_as_given_or_as_json() -> None:
    parsed = APIGatewayWebSocketMessageEventModel.model_validate(message_event("A=", {"body": "hi"}))
    assert (parsed.request_context.route_key, parsed.is_base64_encoded) == ("$default", False)
    assert json.loads(str(parsed.body)) == {"body": "hi"}
    assert message_event("A=", "not json")["body"] == "not json"
    binary = message_event("A=", base64.b64encode(b"\x00").decode(), is_base64=True)
    assert APIGatewayWebSocketMessageEventModel.model_validate(binary).is_base64_encoded


def test_a_disconnect_event_has_the_close_code() -> None:
    parsed = APIGatewayWebSocketDisconnectEventModel.model_validate(disconnect_event("A=", 1000))
    assert parsed.request_context.disconnect_status_code == 1000
    assert parsed.request_context.route_key == "$disconnect"


def test_chalice_reads_the_events_as_websocket_events() -> None:
    context = LambdaContext("message", time_left_ms=5_000)
    event = WebsocketEvent(message_event("A=", {"type": "ping"}), context)
    assert (event.connection_id, event.domain_name, event.stage) == ("A=", DOMAIN, STAGE)
    assert event.json_body == {"type": "ping"}
    assert 0 < context.get_remaining_time_in_millis() <= 5_000


def test_the_environment_helper_clears_every_documented_setting() -> None:
    """A setting added to docs/operations.md without a place in CLEARED would leak from the shell."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    section = text.split("\n## Settings", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", section, re.MULTILINE))
    assert len(documented) >= 15, documented
    assert documented <= set(CLEARED), sorted(documented - set(CLEARED))
