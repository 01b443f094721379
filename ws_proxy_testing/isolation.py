"""What a test changes stays in that test: the app's environment, and the clients ``app.py`` caches.

``app.get_clients`` builds the clients (settings, DynamoDB and Lambda clients, the
backend client, a Management API gateway per endpoint, the registry's connection
cache) on first use and keeps them for the container's life, as Lambda should. In
one pytest process that container is every test: the first test to invoke a handler
fixes the settings the next tests run with. ``reset_clients`` drops them, and
``use_environment`` gives a test the environment it names and nothing from the shell.
"""

from __future__ import annotations

from typing import Protocol

import app

#: A loopback port where nothing listens (the discard port): a neighbour a test did not
#: name is refused at once, never reached over the network.
NOWHERE = "http://127.0.0.1:9"
TABLE = "ws-proxy-test-connections"
REGION = "us-east-1"

#: The proxy's settings (docs/operations.md, "Settings") and the AWS variables that would
#: change where its clients go or who they are: none is taken from the shell running the tests.
CLEARED = (
    "BACKEND_URL",
    "CONNECTIONS_TABLE",
    "API_GATEWAY_ENDPOINT",
    "CONNECTION_TTL_SECONDS",
    "BACKEND_TIMEOUT_SECONDS",
    "FANOUT_WORKERS",
    "PUSH_CHUNK_SIZE",
    "MAX_RESPONSE_BYTES",
    "MAX_FEED_CONNECTIONS",
    "AWS_MAX_ATTEMPTS",
    "DELIVER_RETRY_SECONDS",
    "HANDSHAKE_GRACE_SECONDS",
    "LOOKUP_RETRY_DELAYS",
    "POST_RETRY_BASE_SECONDS",
    "ALLOWED_ORIGINS",
    "BACKEND_ROUTES",
    "DELIVER_FUNCTION_NAME",
    "FANOUT_FUNCTION_NAME",
    "MAX_SUBSCRIPTIONS",
    "PRESENCE_EVENTS",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_LAMBDA",
)


class EnvironmentPatch(Protocol):
    """What ``use_environment`` needs of pytest's ``monkeypatch``."""

    def setenv(self, name: str, value: str, prepend: str | None = None) -> None: ...

    def delenv(self, name: str, raising: bool = True) -> None: ...


def environment(
    *,
    backend_url: str = NOWHERE,
    api_gateway_endpoint: str = f"{NOWHERE}/development",
    dynamodb_endpoint: str = NOWHERE,
    lambda_endpoint: str = NOWHERE,
    table: str = TABLE,
    region: str = REGION,
    **settings: str,
) -> dict[str, str]:
    """The environment the app's functions read in a test, every neighbour on loopback.

    ``backend_url``, ``api_gateway_endpoint`` (the Management API), ``dynamodb_endpoint``
    (a moto server, say) and ``lambda_endpoint`` (where ``$connect`` invokes ``deliver``
    and a large fan-out ``fanout``) default to ``NOWHERE``. ``settings`` adds or replaces
    variables by name (``ALLOWED_ORIGINS="https://app.example.com"``). Credentials are
    dummies: the Management API's posts are signed with them.
    """
    return {
        "BACKEND_URL": backend_url,
        "CONNECTIONS_TABLE": table,
        "API_GATEWAY_ENDPOINT": api_gateway_endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
        "AWS_ENDPOINT_URL_LAMBDA": lambda_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "DELIVER_FUNCTION_NAME": "ws-proxy-test-deliver",
        "FANOUT_FUNCTION_NAME": "ws-proxy-test-fanout",
        **settings,
    }


def use_environment(monkeypatch: EnvironmentPatch, env: dict[str, str]) -> None:
    """``env`` for the rest of the test, every variable of ``CLEARED`` it does not name unset."""
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def reset_clients() -> None:
    """Close the app's clients, if built, and drop them: the next invocation builds them anew
    from the environment it finds.

    Call it after changing a setting in a test that has already invoked a function.
    """
    if app.get_clients.cache_info().currsize:
        app.get_clients().close()
    app.get_clients.cache_clear()
