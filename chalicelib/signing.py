"""SigV4 by string formatting: the Management API's ``POST @connections/{id}``, DynamoDB's, Lambda's.

``Signer`` computes what botocore's ``SigV4Auth`` computes for this one request
shape, with the signing key derived once per day and secret and the payload
hashed once per fan-out (``tests/unit/test_signing.py`` holds it to botocore byte
for byte; ``bench/RESULTS.md`` has the measurement that keeps it). ``sign_request``
signs any request without a query string, for the thin DynamoDB and Lambda clients
(``chalicelib.aws``; ``tests/unit/test_aws.py`` holds them to botocore).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import re
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from botocore.credentials import ReadOnlyCredentials

#: The one Management API call made here: ``POST @connections/{id}`` (execute-api:ManageConnections).
METHOD = "POST"
_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com")


class Credentials(NamedTuple):
    """Frozen AWS credentials (the fields of botocore's ``ReadOnlyCredentials``)."""

    access_key: str
    secret_key: str
    token: str | None


def region_for(endpoint: str, env: Any = os.environ) -> str:
    """The signing region: Lambda's own, else the one in an execute-api host name."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if env.get(name):
            return str(env[name])
    match = _REGION_IN_HOST.search(urlsplit(endpoint).netloc)
    return match.group(1) if match else "us-east-1"


def amz_now() -> str:
    """The ``X-Amz-Date`` of a request signed now."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


_keys: dict[tuple[str, str, str, str], bytes] = {}


def _authorization(
    credentials: Credentials | ReadOnlyCredentials,
    region: str,
    service: str,
    amz_date: str,
    canonical: str,
    signed_headers: str,
) -> str:
    """The ``Authorization`` header for the canonical request, with the day's signing key (cached)."""
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    key = _keys.get((credentials.secret_key, date, region, service))
    if key is None:
        key = hmac.new(f"AWS4{credentials.secret_key}".encode(), date.encode(), hashlib.sha256).digest()
        for part in (region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        if len(_keys) > 8:  # a few services and regions for today's credentials
            _keys.clear()
        _keys[(credentials.secret_key, date, region, service)] = key
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )


class Signer:
    """SigV4 for ``POST {stage}/@connections/{id}`` with one payload, for one fan-out.

    The same computation as botocore's ``SigV4Auth`` for this one request shape
    (signed headers ``content-type``, ``host``, ``x-amz-date`` and, with session
    credentials, ``x-amz-security-token``; the path encoded twice, as botocore does
    for every service but S3), without building an ``AWSRequest`` per post.
    """

    def __init__(
        self, credentials: Credentials | ReadOnlyCredentials, region: str, host: str, payload_hash: str
    ) -> None:
        self._credentials = credentials
        self._region = region
        self._host = host
        self._payload_hash = payload_hash
        token = credentials.token
        self._signed = "content-type;host;x-amz-date" + (";x-amz-security-token" if token else "")
        self._token_line = f"x-amz-security-token:{token}\n" if token else ""

    def headers(self, path: str, amz_date: str | None = None) -> dict[str, str]:
        """The headers that sign a POST of the payload to ``path`` (already URL-quoted once)."""
        amz_date = amz_date or amz_now()
        canonical = (
            f"{METHOD}\n{quote(path, safe='/~')}\n\ncontent-type:application/json\nhost:{self._host}\n"
            f"x-amz-date:{amz_date}\n{self._token_line}\n{self._signed}\n{self._payload_hash}"
        )
        authorization = _authorization(
            self._credentials, self._region, "execute-api", amz_date, canonical, self._signed
        )
        headers = {"Content-Type": "application/json", "X-Amz-Date": amz_date, "Authorization": authorization}
        if self._credentials.token:
            headers["X-Amz-Security-Token"] = self._credentials.token
        return headers


def sign_request(
    credentials: Credentials | ReadOnlyCredentials,
    service: str,
    region: str,
    host: str,
    path: str,
    headers: dict[str, str],
    payload: bytes,
    amz_date: str,
) -> dict[str, str]:
    """SigV4 for a POST with no query string: ``headers`` and the signing headers, all signed.

    The same computation as botocore's ``SigV4Auth.add_auth`` for such a request
    (``tests/unit/test_aws.py`` holds it to botocore byte for byte): every
    header in ``headers`` (names as sent, values already trimmed) is signed, with
    ``host``, ``x-amz-date`` and, with session credentials, ``x-amz-security-token``;
    ``path`` is as sent (URL-quoted once) and encoded once more in the canonical
    request, as botocore does for every service but S3.
    """
    signed = dict(headers)
    signed["X-Amz-Date"] = amz_date
    if credentials.token:
        signed["X-Amz-Security-Token"] = credentials.token
    lines = sorted([("host", host), *((name.lower(), value) for name, value in signed.items())])
    names = ";".join(name for name, _ in lines)
    header_lines = "".join(f"{name}:{value}\n" for name, value in lines)
    payload_hash = hashlib.sha256(payload).hexdigest()
    canonical = f"{METHOD}\n{quote(path, safe='/~')}\n\n{header_lines}\n{names}\n{payload_hash}"
    signed["Authorization"] = _authorization(credentials, region, service, amz_date, canonical, names)
    return signed
