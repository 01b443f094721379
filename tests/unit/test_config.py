"""Settings.from_env and the route table (docs/backend.md)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib import aws
from chalicelib.clients import build_clients
from chalicelib.config import Settings
from chalicelib.errors import BackendUnavailable, ConfigurationError
from chalicelib.registry import ConnectionRegistry
from chalicelib.routes import DEFAULT_ROUTES, ChannelKind, channel_key, is_channel_key, routes_with_overrides
from chalicelib.signing import Credentials
from chalicelib.transport import Transport
from tests.standins import DynamoDbStandIn
from ws_proxy_testing.isolation import use_environment

BASE = {"BACKEND_URL": "https://api.example.com/", "CONNECTIONS_TABLE": "t"}


def test_defaults_are_the_documented_ones() -> None:
    s = Settings.from_env(BASE)
    assert s.backend_url == "https://api.example.com"
    assert (s.connection_ttl_seconds, s.backend_timeout_seconds, s.fanout_workers, s.push_chunk_size) == (
        86400,
        10.0,
        128,
        500,
    )
    assert s.api_gateway_endpoint is None
    assert s.allowed_origins == ()
    assert (s.max_response_bytes, s.aws_max_attempts) == (4 * 1024 * 1024, 5)
    assert (s.deliver_retry_seconds, s.handshake_grace_seconds, s.post_retry_base_seconds) == (5.0, 5.0, 0.05)
    assert s.lookup_retry_delays == (0.05, 0.1, 0.2, 0.4)
    assert s.max_feed_connections == 0  # no cap


def test_values_are_read_and_normalised() -> None:
    s = Settings.from_env(
        {
            **BASE,
            "API_GATEWAY_ENDPOINT": "https://x.example/dev/",
            "FANOUT_WORKERS": "8",
            "ALLOWED_ORIGINS": " https://a.example/ ,,https://b.example",
            "BACKEND_TIMEOUT_SECONDS": "2.5",
        }
    )
    assert s.api_gateway_endpoint == "https://x.example/dev"
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    assert s.fanout_workers == 8
    assert s.backend_timeout_seconds == 2.5
    assert Settings.from_env({**BASE, "MAX_FEED_CONNECTIONS": "5000"}).max_feed_connections == 5000
    timings = Settings.from_env(
        {**BASE, "LOOKUP_RETRY_DELAYS": "0.001, 0.002", "HANDSHAKE_GRACE_SECONDS": "0"}
    )
    assert (timings.lookup_retry_delays, timings.handshake_grace_seconds) == ((0.001, 0.002), 0.0)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"CONNECTIONS_TABLE": "t"}, "BACKEND_URL is required"),
        ({"BACKEND_URL": "https://x"}, "CONNECTIONS_TABLE is required"),
        ({**BASE, "BACKEND_URL": "ftp://x"}, "BACKEND_URL must start"),
        ({**BASE, "FANOUT_WORKERS": "many"}, "FANOUT_WORKERS must be a number"),
        ({**BASE, "FANOUT_WORKERS": "0"}, "at least 1"),
        ({**BASE, "PUSH_CHUNK_SIZE": "2.5"}, "whole number"),
        ({**BASE, "BACKEND_TIMEOUT_SECONDS": "30"}, "29 s"),
        ({**BASE, "CONNECTION_TTL_SECONDS": "5"}, "at least 60"),
        ({**BASE, "MAX_RESPONSE_BYTES": "100"}, "MAX_RESPONSE_BYTES must be at least 1024"),
        ({**BASE, "AWS_MAX_ATTEMPTS": "0"}, "AWS_MAX_ATTEMPTS must be at least 1"),
        ({**BASE, "MAX_FEED_CONNECTIONS": "-1"}, "MAX_FEED_CONNECTIONS must be at least 0"),
        ({**BASE, "MAX_FEED_CONNECTIONS": "1.5"}, "MAX_FEED_CONNECTIONS must be a whole number"),
        ({**BASE, "MAX_FEED_CONNECTIONS": "lots"}, "MAX_FEED_CONNECTIONS must be a number"),
        ({**BASE, "MAX_FEED_CONNECTIONS": "inf"}, "MAX_FEED_CONNECTIONS must be a finite number"),
        ({**BASE, "MAX_FEED_CONNECTIONS": "nan"}, "MAX_FEED_CONNECTIONS must be a finite number"),
        ({**BASE, "LOOKUP_RETRY_DELAYS": "0.1,soon"}, "numbers separated by commas"),
        ({**BASE, "LOOKUP_RETRY_DELAYS": "0.1,60"}, "between 0 and 5 seconds"),
        ({**BASE, "DELIVER_RETRY_SECONDS": "-1"}, "DELIVER_RETRY_SECONDS must be at least 0"),
        ({**BASE, "API_GATEWAY_ENDPOINT": "wss://x/dev"}, "API_GATEWAY_ENDPOINT must start"),
        ({**BASE, "BACKEND_ROUTES": "{"}, "not valid JSON"),
        ({**BASE, "BACKEND_ROUTES": "[]"}, "JSON object"),
        ({**BASE, "BACKEND_ROUTES": '{"video": {}}'}, "unknown connection type"),
        ({**BASE, "BACKEND_ROUTES": '{"chat": {"verb": "x"}}'}, "keys among"),
        ({**BASE, "BACKEND_ROUTES": '{"chat": "/x"}'}, "chat must be an object with keys among"),
        ({**BASE, "BACKEND_ROUTES": '{"chat": "channel"}'}, "chat must be an object with keys among"),
        ({**BASE, "BACKEND_ROUTES": '{"chat": {"message": "/x/{room}"}}'}, "unknown placeholder"),
        ({**BASE, "BACKEND_ROUTES": '{"chat": {"message": ""}}'}, "non-empty"),
        # a stray brace passed validation once, then failed every request
        (
            {**BASE, "BACKEND_ROUTES": '{"chat": {"message": "/x/{booking_id}}/send"}}'},
            "not a valid template",
        ),
        ({**BASE, "BACKEND_ROUTES": '{"chat": {"message": "/x/{booking_id"}}'}, "not a valid template"),
        ({**BASE, "BACKEND_ROUTES": '{"chat": {"message": "/x/{}"}}'}, "unknown placeholder"),
        ({**BASE, "BACKEND_ROUTES": '{"chat": {"message": "/x/{booking_id!r}"}}'}, "no format spec"),
        ({**BASE, "BACKEND_ROUTES": '{"chat": {"message": "/x/{booking_id:>9}"}}'}, "no format spec"),
        ({**BASE, "BACKEND_ROUTES": '{"chat": {"message": "/x/{booking_id.real}"}}'}, "unknown placeholder"),
        ({**BASE, "BACKEND_ROUTES": '{"notification": {"message": "/n/{booking_id}"}}'}, "has no booking_id"),
        ({**BASE, "BACKEND_ROUTES": '{"chat": {"message": "x/{booking_id}"}}'}, "starting with '/'"),
        ({**BASE, "BACKEND_ROUTES": '{"chat": {"message": "/x?b={booking_id}"}}'}, "no query"),
        # channels are fixed by type: a template could make two kinds share one
        ({**BASE, "BACKEND_ROUTES": '{"chat": {"channel": "chat-{booking_id}"}}'}, "channels are fixed"),
        ({**BASE, "BACKEND_ROUTES": '{"notification": {"participants": "/p"}}'}, "for booking types"),
        ({**BASE, "BACKEND_ROUTES": '{"feed": {"user_connect": "/c"}}'}, "for booking types"),
        ({**BASE, "BACKEND_ROUTES": '{"chat": {"user_connect": "/c/{booking_id}"}}'}, "unknown placeholder"),
        ({**BASE, "BACKEND_ROUTES": '{"chat": {"participants": "p/{booking_id}"}}'}, "starting with '/'"),
        ({**BASE, "MAX_SUBSCRIPTIONS": "-1"}, "MAX_SUBSCRIPTIONS must be at least 0"),
        ({**BASE, "MAX_SUBSCRIPTIONS": "many"}, "MAX_SUBSCRIPTIONS must be a number"),
        ({**BASE, "PRESENCE_EVENTS": "sometimes"}, "PRESENCE_EVENTS must be true or false"),
    ],
)
def test_bad_configuration_is_explained(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        Settings.from_env(env)


def test_every_setting_reads_a_variable_documented_in_operations_md() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    names = [s.metadata.get("name", s.name.upper()) for s in dataclasses.fields(Settings)]
    assert len(names) == 20
    assert [name for name in names if f"| `{name}` |" not in text] == []


def test_route_table_matches_the_contract() -> None:
    chat, booking, note, feed = (DEFAULT_ROUTES[t] for t in ("chat", "booking", "notification", "feed"))
    assert chat.connect_path("7") == "/api/chat/ws/7/connect"
    assert chat.message_path("7") == "/api/chat/ws/7/message"
    assert booking.connect_path("7") == "/api/ws/bookings/7/connect"
    assert booking.message_path("7") == "/api/ws/bookings/7/message"
    assert note.connect_path(None) == "/api/notifications/ws/connect"
    assert note.message_path(None) == "/api/notifications/ws/message"
    assert note.channel_for(None, "42") == "user#42"
    assert feed.connect_path(None) is None
    assert feed.message_path(None) == "/api/ws/items-feed/message"
    assert feed.channel_for(None, None) == "feed#"
    assert chat.channel_for("7", "u") == booking.channel_for("7", None) == "booking#7"
    assert not feed.needs_token
    assert chat.needs_token
    assert note.needs_token


def test_no_id_names_another_kinds_channel() -> None:
    """Booking ids like ``user_alice`` or ``feed`` once landed in a user's or the feed's channel."""
    chat, note, feed = (DEFAULT_ROUTES[t] for t in ("chat", "notification", "feed"))
    bookings = {chat.channel_for(b, None) for b in ("user_alice", "feed", "user#alice", "feed#")}
    users = {note.channel_for(None, u) for u in ("alice", "feed", "booking#1", "1")}
    assert len(bookings) == 4
    assert len(users) == 4
    assert not bookings & users
    assert feed.channel_for(None, None) not in bookings | users
    assert all(is_channel_key(c) for c in bookings | users)
    assert not is_channel_key("1")
    assert not is_channel_key("user_alice")
    assert not is_channel_key("feed")


@pytest.mark.parametrize("kind", ["booking", "user"])
@pytest.mark.parametrize("value", [None, ""])
def test_a_booking_or_user_channel_without_an_id_is_refused(kind: ChannelKind, value: str | None) -> None:
    """``booking#`` or ``user#`` would be one channel shared by every id-less connection."""
    with pytest.raises(ValueError, match=f"a {kind} channel needs an id"):
        channel_key(kind, value)
    assert channel_key("feed") == channel_key("feed", "ignored") == "feed#"


def test_routes_can_be_overridden_by_configuration() -> None:
    table = routes_with_overrides(
        json.dumps(
            {"chat": {"message": "/v2/chat/{booking_id}/send"}, "feed": {"connect": "/v2/feed/connect"}}
        )
    )
    assert table["chat"].message_path("3") == "/v2/chat/3/send"
    assert table["chat"].channel_for("3", None) == "booking#3"  # the booking id, never the channel
    assert table["chat"].connect_path("3") == "/api/chat/ws/3/connect"
    assert table["feed"].connect_path(None) == "/v2/feed/connect"
    assert routes_with_overrides(None) == DEFAULT_ROUTES


@pytest.fixture
def throttling_dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDbStandIn]:
    """The container's DynamoDB is a stand-in that throttles on request."""
    server = DynamoDbStandIn().start()
    env = {
        **BASE,
        "AWS_ENDPOINT_URL_DYNAMODB": server.url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
    }
    use_environment(monkeypatch, env)
    yield server
    server.stop()


def test_the_registry_client_retries_with_dynamodbs_own_short_backoff_then_gives_up(
    throttling_dynamodb: DynamoDbStandIn,
) -> None:
    clients = build_clients()  # AWS_MAX_ATTEMPTS: 5 by default
    try:
        registry = clients.registry
        assert isinstance(registry, ConnectionRegistry)  # the real one: one Query per connection_items
        throttling_dynamodb.throttle = 4  # absorbed: the fifth attempt is answered
        assert registry.connection_items("A=") == []
        assert throttling_dynamodb.operations == ["Query"] * 5
        throttling_dynamodb.throttle = 6  # five attempts, all throttled: the caller is told
        with pytest.raises(BackendUnavailable):
            registry.connection_items("A=")
        assert throttling_dynamodb.operations == ["Query"] * 10
        assert throttling_dynamodb.throttle == 1
    finally:
        clients.close()


def test_dynamodb_retries_pause_as_botocore_legacy_mode_does_for_dynamodb(
    throttling_dynamodb: DynamoDbStandIn,
) -> None:
    """DynamoDB's own backoff (50 ms doubling), not standard mode's pauses of up to 1, 2, 4 s."""
    pauses: list[float] = []
    transport = Transport(2)
    client = aws.DynamoDB(
        throttling_dynamodb.url,
        "us-east-1",
        lambda: Credentials("AKID", "secret", None),
        transport,
        max_attempts=5,
        sleep=pauses.append,
    )
    try:
        throttling_dynamodb.throttle = 4
        assert client.call("Query", {"TableName": "t"})["Items"] == []
        assert pauses == [0.05, 0.1, 0.2, 0.4]
    finally:
        transport.close()


def test_one_socket_per_user_settings_and_routes() -> None:
    defaults = Settings.from_env(BASE)
    assert (defaults.max_subscriptions, defaults.presence_events) == (50, False)
    chat = defaults.routes["chat"]
    assert (chat.user_connect, chat.participants) == ("/api/chat/ws/connect", None)
    assert defaults.routes["booking"].user_connect is None
    routes = {"chat": {"participants": "/p/{booking_id}", "user_connect": None}}
    env = {**BASE, "MAX_SUBSCRIPTIONS": "3", "PRESENCE_EVENTS": "TRUE", "BACKEND_ROUTES": json.dumps(routes)}
    settings = Settings.from_env(env)
    assert (settings.max_subscriptions, settings.presence_events) == (3, True)
    assert settings.routes["chat"].participants_path("9") == "/p/9"
    assert settings.routes["chat"].user_connect is None


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("AWS_ENDPOINT_URL_DYNAMODB", "localhost:8000"),
        ("AWS_ENDPOINT_URL_LAMBDA", "ftp://127.0.0.1:3001"),
        ("AWS_ENDPOINT_URL", "http://"),
    ],
)
def test_an_aws_endpoint_that_is_not_an_http_url_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, url: str
) -> None:
    """Found when the clients are built (``$connect`` then answers "misconfigured"), not on a call."""
    env = {**BASE, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    use_environment(monkeypatch, {**env, name: url})
    with pytest.raises(ValueError, match=re.escape(f"not an http(s) URL: {url!r}")):
        build_clients()
