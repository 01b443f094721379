"""The local stack: the unmodified app behind an API Gateway look-alike. Never deployed.

``python -m local_gateway --help`` says what it starts. Nothing in ``app.py``
or ``chalicelib`` imports this package.

- ``__main__``: the command line; ``stack``: starts and stops everything below;
- ``server``: the gateway's one port, made of ``websocket_api`` (WebSocket and
  Management APIs, which share the live sockets), ``lambda_api`` (Lambda Invoke),
  ``faults`` (fault injection, a test facility) and ``demo`` (the demo page);
- ``runtime``: runs the app's handlers in worker threads with Lambda-shaped
  contexts (``aws_shapes``), one readable log line per call;
- ``reference_backend``: a FastAPI backend for all four connection types;
- ``exposure``: keeps it all on loopback unless asked otherwise.
"""
