"""Which requests the local stack answers: its own names and its own pages, nothing else.

``exposure`` keeps the servers on loopback, but a browser is on loopback too, and
it runs any web page's script. So every server of the stack (gateway, reference
backend, embedded DynamoDB) also checks what the browser says a request is:

- ``Host`` must name loopback (``127.0.0.1`` and the rest of ``127/8``,
  ``localhost``, ``[::1]``) or the configured ``--host``. A page that rebinds
  its own name to 127.0.0.1 (DNS rebinding) sends its own name, and is refused:
  otherwise it could read every answer, the table's stored tokens included. A
  name is never resolved here: resolving is what rebinding fools.
- ``Origin``, which browsers send with every cross-site request (and a page
  cannot remove): a request from another origin could still run a handler even
  when the browser hides the answer from its page (a text/plain "simple" POST
  needs no preflight). Each server says which other origins it answers, and
  for what (``Trust.is_local_origin``): the gateway serves the client module
  and the reference backend development tokens to pages on loopback; nothing
  else answers another origin.

Requests without ``Origin`` (boto3, curl, scripts) are not browsers' cross-site
requests; the Host check still applies to them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

#: Names that are loopback whatever DNS says (browsers never ask DNS for them).
LOOPBACK_NAMES = frozenset({"localhost"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def hostname_of(host: str) -> tuple[str, int | None] | None:
    """The name and port of a ``Host`` value (``[::1]:3001`` -> ``('::1', 3001)``); None if malformed."""
    try:
        parts = urlsplit(f"http://{host}")
        name, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not name or parts.path or parts.query or parts.fragment or parts.username is not None:
        return None
    return name.lower().rstrip("."), port


def is_loopback_name(name: str) -> bool:
    """Whether ``name`` is ``localhost`` or a loopback IP literal (never resolved)."""
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Trust:
    """The checks, for a stack listening on ``host`` (its ``--host``)."""

    host: str = "127.0.0.1"

    def _own_name(self, name: str) -> bool:
        return is_loopback_name(name) or name == self.host.lower().strip("[]").rstrip(".")

    def host_allowed(self, host: str | None) -> bool:
        """Whether a request's ``Host`` names this stack: loopback or the configured host."""
        parsed = hostname_of(host) if host else None
        return parsed is not None and self._own_name(parsed[0])

    def is_local_origin(self, origin: str) -> bool:
        """Whether ``origin`` is a page on loopback (any port) or on the configured host."""
        try:
            parts = urlsplit(origin)
            name = parts.hostname
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            return False
        return parts.scheme in _DEFAULT_PORTS and name is not None and self._own_name(name.lower())

    @staticmethod
    def is_same_origin(origin: str, host: str | None, scheme: str = "http") -> bool:
        """Whether ``origin`` is the origin of the server the request reached (its ``Host``)."""
        parsed = hostname_of(host) if host else None
        if parsed is None:
            return False
        try:
            parts = urlsplit(origin)
            origin_port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            return False
        name, port = parsed
        return (
            parts.scheme == scheme
            and (parts.hostname or "").lower() == name
            and origin_port == (port or _DEFAULT_PORTS[scheme])
        )

    def host_refusal(self, host: str | None) -> str:
        extra = f" or {self.host}" if not is_loopback_name(self.host.lower()) else ""
        return (
            f"Host {host!r} is refused: the local stack answers only loopback names "
            f"(127.0.0.1, localhost, [::1]){extra}, so that no web page can reach it by "
            "rebinding its own name (DNS rebinding)"
        )

    @staticmethod
    def origin_refusal(origin: str, what: str) -> str:
        return f"Origin {origin!r} is refused: {what}"
