"""No token or message body in any log record, whatever the log level.

The proxy's own records carry whitelisted fields only (``summary.HandlerRun``).
The libraries it calls are another matter: at DEBUG, botocore prints the
request parameters and the prepared request (``botocore.endpoint``: a PutItem
carries the connection's token, an Invoke the packed frames of a history), the
raw response (``botocore.parsers``: a Query on the connection index returns the
token), the canonical request (``botocore.auth``: the session token header) and
a request body it rewinds (``botocore.awsrequest``), and on a bad metadata
answer its body (``botocore.utils``).

Each of those loggers gets a ``RedactArguments`` filter. A filter on a logger
runs for every record that logger creates, before any handler anywhere in the
hierarchy sees it (records propagate to the ancestors' handlers only after
passing it), so it holds for the Lambda runtime's root handler, a handler added
by ``boto3.set_stream_logger`` and any other. A filter on one handler would
protect that handler only, and levels pinned to INFO would hold only until
someone sets ``botocore.endpoint`` to DEBUG. The record itself stays (its
template, level, time and source line: "Making request for
OperationModel(name=PutItem) with params: [redacted]"), so debugging what the
SDK did remains possible; only the values it was about to print go.

Loggers that print no content are left alone: ``botocore.hooks`` (event names
and handler names), ``urllib3.connectionpool`` (method, path and status: the
proxy's paths carry booking and connection ids, never a token, since tokens
travel in bodies), ``botocore.retries`` and ``botocore.credentials`` (which
source, never the keys). ``tests/functional/test_logging.py`` runs every
handler with the root and every library logger at DEBUG and checks every
record of every logger for a token or a body, so a library upgrade that starts
printing content elsewhere fails the build.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

#: The library loggers that print request or response content at DEBUG.
CONTENT_LOGGERS = (
    "botocore.endpoint",
    "botocore.parsers",
    "botocore.auth",
    "botocore.awsrequest",
    "botocore.utils",
)
REDACTED = "[redacted]"
#: Arguments that cannot carry text: kept as they are.
_SAFE_TYPES = (bool, int, float, type(None))


def _safe(value: Any) -> Any:
    # botocore's OperationModel prints as its name (checked by name: botocore is imported
    # only where the proxy falls back to its credential chain, never for this)
    kind = type(value)
    operation = (kind.__module__, kind.__name__) == ("botocore.model", "OperationModel")
    return value if operation or isinstance(value, _SAFE_TYPES) else REDACTED


class RedactArguments(logging.Filter):
    """Keeps the record and its template; replaces every argument that could carry text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str):  # a message object, not a library's template
            record.msg, record.args = REDACTED, ()
        elif isinstance(record.args, Mapping):
            record.args = {key: _safe(value) for key, value in record.args.items()}
        elif record.args:
            record.args = tuple(_safe(value) for value in record.args)
        return True


def redact_library_logs() -> None:
    """Install ``RedactArguments`` on each of ``CONTENT_LOGGERS`` (once; safe to call again)."""
    for name in CONTENT_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactArguments) for f in target.filters):
            target.addFilter(RedactArguments())
