"""The reference backend's settings and limits."""

from __future__ import annotations

from dataclasses import dataclass

DEV_SECRET = "ws-proxy-local-development-secret"  # not a secret: signs development tokens only
#: The longest (and default) lifetime of a development token.
TOKEN_LIFETIME_SECONDS = 12 * 3600
HISTORY_LENGTH = 50
#: A resuming client (``since``) gets every message it missed, up to this many; past it, the
#: last HISTORY_LENGTH as for a new client (the history then carries no ``since``).
MAX_MISSED_MESSAGES = 1000
MAX_BODY_CHARS = 4000
#: Booking ids and user ids in paths and tokens.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


@dataclass
class BackendSettings:
    secret: str = DEV_SECRET
    #: The Lambda Invoke endpoint for pushes (the local gateway's URL); None disables pushes.
    lambda_endpoint: str | None = None
    push_function_name: str = "ws-proxy-local-push"
    region: str = "us-east-1"
    #: The address it listens on (the stack's ``--host``): accepted as ``Host`` besides loopback.
    host: str = "127.0.0.1"
