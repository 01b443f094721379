"""Keep the local stack on loopback unless its exposure is asked for by name.

Nothing in the local stack authenticates anyone: whoever reaches its ports can
mint a token for any user (``POST /dev/token``), post to or close any
connection (the Management API), invoke ``deliver``, ``push`` and ``fanout``
(the Lambda Invoke API) and read every stored token (the DynamoDB table). So
``--host`` must name a loopback address, unless ``--expose-insecure-local-stack``
says the exposure is intended; then the stack warns loudly.
"""

from __future__ import annotations

import ipaddress
import socket

EXPOSE_FLAG = "--expose-insecure-local-stack"

_EXPOSED = (
    "the reference backend's dev token endpoint (anyone can mint a token for any user), "
    "the Management API without authentication (anyone can post to or close any connection), "
    "the Lambda Invoke API (anyone can invoke deliver, push and fanout) "
    "and the DynamoDB table (anyone can read every stored token)"
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address, or a name whose every address is one."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    addresses = {str(info[4][0]) for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addresses)


def refusal(host: str) -> str:
    return (
        f"--host {host!r} is not a loopback address: the local stack would expose {_EXPOSED} "
        f"to everyone who can reach {host!r}. Use 127.0.0.1, or add {EXPOSE_FLAG} if that exposure "
        "is intended (never on a shared or public network)."
    )


def warning(host: str) -> str:
    line = "!" * 78
    return "\n".join(
        [
            line,
            f"WARNING: the local stack listens on {host}, beyond this machine ({EXPOSE_FLAG}).",
            f"It authenticates no one. Exposed: {_EXPOSED}.",
            "It is a development tool, never a deployment: stop it when you are done.",
            line,
        ]
    )
