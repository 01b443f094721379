"""Testing the proxy's functions through Chalice's test client (docs/testing.md). Never deployed.

Chalice packages ``app.py``, ``chalicelib/`` and ``vendor/`` only; nothing in them
imports this package.

- ``events``: API Gateway WebSocket events for ``$connect``, ``$default`` and
  ``$disconnect`` (``connect_event``, ``message_event``, ``disconnect_event``) and a
  Lambda context (``LambdaContext``), built by the local stack's ``aws_shapes``;
- ``isolation``: ``environment()`` (the settings a test runs with, every neighbour on
  loopback, ``NOWHERE`` by default), ``use_environment`` and ``reset_clients()`` (the
  clients ``app.py`` caches per container, dropped);
- ``pytest_plugin``: the fixtures ``ws_proxy_app`` and ``ws_proxy_environment``.
"""

from __future__ import annotations

from ws_proxy_testing.events import LambdaContext, connect_event, disconnect_event, message_event
from ws_proxy_testing.isolation import NOWHERE, environment, reset_clients, use_environment

__all__ = [
    "NOWHERE",
    "LambdaContext",
    "connect_event",
    "disconnect_event",
    "environment",
    "message_event",
    "reset_clients",
    "use_environment",
]
