"""``python -m local_gateway``: run the proxy locally behind an API Gateway look-alike.

Starts, in the foreground: an embedded DynamoDB (moto) with the connections
table, the reference backend, and the gateway that serves the WebSocket API,
the Management API, the Lambda Invoke API and the demo page on one port.
Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from local_gateway import exposure
from local_gateway.stack import DEFAULT_TABLE, LocalStack, StackOptions, StartupError

logger = logging.getLogger("local_gateway")


def parse_args(argv: list[str] | None = None) -> tuple[StackOptions, Path | None]:
    parser = argparse.ArgumentParser(
        prog="python -m local_gateway",
        description=(
            "Run the WebSocket proxy locally: the unmodified Chalice handlers behind a gateway "
            "that speaks API Gateway's WebSocket, Management and Lambda Invoke APIs, with an "
            "embedded DynamoDB, a reference backend and a demo page. Ctrl-C stops everything."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--port",
        type=int,
        default=3001,
        help="port of the gateway: WebSocket, Management and Lambda Invoke APIs, demo page (0: any free)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help=f"address every server listens on; only loopback addresses unless {exposure.EXPOSE_FLAG}",
    )
    parser.add_argument(
        exposure.EXPOSE_FLAG,
        action="store_true",
        help="allow a --host beyond loopback, exposing the dev token endpoint, the unauthenticated "
        "Management API, Lambda Invoke and the table to whoever reaches it (warns loudly)",
    )
    parser.add_argument(
        "--stage",
        default="development",
        help="API Gateway stage: clients connect to ws://HOST:PORT/STAGE (or /), the app posts to /STAGE/...",
    )
    parser.add_argument(
        "--backend-url",
        default=None,
        help="use this backend (docs/backend.md) instead of starting the reference backend",
    )
    parser.add_argument(
        "--backend-port",
        type=int,
        default=8000,
        help="port of the reference backend started when --backend-url is not given (0: any free)",
    )
    parser.add_argument(
        "--dynamodb-endpoint",
        default=None,
        help="use this DynamoDB (e.g. DynamoDB Local, or AWS's own endpoint) instead of the embedded one; "
        "the table is created there if missing",
    )
    parser.add_argument(
        "--dynamodb-port",
        type=int,
        default=8002,
        help="port of the embedded DynamoDB (moto), started without --dynamodb-endpoint (0: any free)",
    )
    parser.add_argument("--table", default=DEFAULT_TABLE, help="name of the connections table")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=600.0,
        help="seconds without a message either way before the gateway closes a socket (1001), as API Gateway",
    )
    parser.add_argument(
        "--max-lifetime",
        type=float,
        default=7200.0,
        help="seconds after which the gateway closes any socket (1001), as API Gateway",
    )
    parser.add_argument(
        "--max-frames-in-flight",
        type=int,
        default=16,
        help="frames of one socket handled at once; past it the gateway stops reading that socket "
        "until one finishes (back-pressure), so a flooding client cannot grow memory without bound",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print the app's own JSON logs and metrics, Management API calls and backend requests",
    )
    parser.add_argument(
        "--fault-injection",
        action="store_true",
        help="test facility: serve /_local/faults, which makes the Management API answer 429, 410 or 5xx "
        "for chosen posts, or hang first (docs/local-stack.md)",
    )
    parser.add_argument(
        "--lambda-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="test facility: every function's timeout (its context's remaining time) instead of "
        ".chalice/config.json's, to try the handlers' deadlines (1-900)",
    )
    parser.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        help="once everything listens, write the endpoints there as JSON (for scripts and tests)",
    )
    args = parser.parse_args(argv)
    for name in ("port", "backend_port", "dynamodb_port"):
        if not 0 <= getattr(args, name) <= 65535:
            parser.error(f"--{name.replace('_', '-')} must be between 0 and 65535")
    if not 1 <= args.max_frames_in_flight <= 1024:
        parser.error("--max-frames-in-flight must be between 1 and 1024")
    if args.lambda_timeout is not None and not 1 <= args.lambda_timeout <= 900:
        parser.error("--lambda-timeout must be between 1 and 900 seconds")
    if args.idle_timeout <= 0 or args.max_lifetime <= 0:
        parser.error("--idle-timeout and --max-lifetime must be positive")
    if not args.stage or "/" in args.stage or args.stage.startswith("@"):
        parser.error("--stage must be one path segment")
    if not args.expose_insecure_local_stack and not exposure.is_loopback(args.host):
        parser.error(exposure.refusal(args.host))
    options = StackOptions(
        host=args.host,
        port=args.port,
        stage=args.stage,
        backend_url=args.backend_url,
        backend_port=args.backend_port,
        dynamodb_endpoint=args.dynamodb_endpoint,
        dynamodb_port=args.dynamodb_port,
        table=args.table,
        idle_timeout=args.idle_timeout,
        max_lifetime=args.max_lifetime,
        verbose=args.verbose,
        fault_injection=args.fault_injection,
        lambda_timeout=args.lambda_timeout,
        expose_insecure_local_stack=args.expose_insecure_local_stack,
        max_frames_in_flight=args.max_frames_in_flight,
    )
    return options, args.ready_file


def banner(stack: LocalStack) -> str:
    e = stack.endpoints()
    backend = e["backend"] + (
        "   (reference backend; API docs at /docs)" if not stack.options.backend_url else ""
    )
    dynamodb = e["dynamodb"] + ("   (embedded)" if not stack.options.dynamodb_endpoint else "")
    return "\n".join(
        [
            f"ws-proxy local stack, stage {e['stage']}",
            f"  gateway      {e['websocket']}   (also {e['gateway'].replace('http', 'ws', 1)}/)",
            f"  demo page    {e['gateway']}/",
            f"  backend      {backend}",
            f"  dynamodb     {dynamodb}   table {e['table']}",
            f"  management   {e['management_api']}/@connections/{{connection_id}}",
            f"  lambda       {e['gateway']}/2015-03-31/functions/{{name}}/invocations",
            *([f"  faults       {e['faults']}   (fault injection, for tests)"] if "faults" in e else []),
            '  try          the demo page, or the session in README.md ("A raw session")',
            "Ctrl-C stops everything.",
            *([exposure.warning(stack.options.host)] if not exposure.is_loopback(stack.options.host) else []),
        ]
    )


async def serve(options: StackOptions, ready_file: Path | None) -> int:
    stack = LocalStack(options)
    try:
        await stack.start()
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    print(banner(stack), flush=True)
    if ready_file is not None:
        ready_file.write_text(json.dumps(stack.endpoints()))  # noqa: ASYNC240 - once, before serving
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        print("stopping: closing sockets, then the servers", flush=True)
        await stack.stop()
        print("stopped", flush=True)
    return 0


def configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", datefmt="%H:%M:%S"))
    gateway_logger = logging.getLogger("local_gateway")
    gateway_logger.addHandler(handler)
    gateway_logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    gateway_logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    options, ready_file = parse_args(argv)
    configure_logging(options.verbose)
    return asyncio.run(serve(options, ready_file))


if __name__ == "__main__":
    sys.exit(main())
