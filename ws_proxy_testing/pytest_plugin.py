"""pytest fixtures for testing the app through Chalice's test client (docs/testing.md).

Enable them in the root ``conftest.py`` (or a test module)::

    pytest_plugins = ["ws_proxy_testing.pytest_plugin"]

- ``ws_proxy_app``: the Chalice app, with the environment of ``ws_proxy_environment``
  set and its clients reset before and after the test.
- ``ws_proxy_environment``: that environment, ``environment()``'s defaults (every
  neighbour refused on loopback). Override the fixture to point the app at your
  stand-ins; it may depend on your fixtures.

It also silences Powertools' "No application metrics to publish" warning, which every
invocation that reports no metric raises.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chalice.app import Chalice

import app
from ws_proxy_testing.isolation import environment, reset_clients, use_environment


def pytest_configure(config: pytest.Config) -> None:
    # Powertools warns at every invocation that reports no metric (a ping, a deliver).
    config.addinivalue_line("filterwarnings", "ignore:No application metrics to publish:UserWarning")


@pytest.fixture
def ws_proxy_environment() -> dict[str, str]:
    """The environment the app's functions read in the test; override this fixture to change it."""
    return environment()


@pytest.fixture
def ws_proxy_app(ws_proxy_environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Chalice]:
    """The app with ``ws_proxy_environment`` and clients built for this test only."""
    use_environment(monkeypatch, ws_proxy_environment)
    reset_clients()
    yield app.app
    reset_clients()  # before monkeypatch restores the environment: nothing built here outlives the test
