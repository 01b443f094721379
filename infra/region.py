"""The AWS region for the commands that call AWS (``make table``, ``make redrive``).

boto3 and chalice read the region from ``AWS_DEFAULT_REGION`` or from the
profile's ``region`` in the AWS config file (``AWS_PROFILE``), never from
``AWS_REGION``: that one is set inside Lambda and read by other SDKs. Without
a region, boto3 raises ``NoRegionError`` at the first client; these commands
stop before that, with one line that says what to set.
"""

from __future__ import annotations

import os


class NoRegion(SystemExit):
    """No region is configured: exits 1 with one line on stderr."""


def message(command: str) -> str:
    aws_region = os.environ.get("AWS_REGION")
    ignored = f"AWS_REGION={aws_region} is set, but " if aws_region else ""
    return (
        f"error: no AWS region for {command}: {ignored}boto3 and chalice read AWS_DEFAULT_REGION "
        f"(or the region of AWS_PROFILE's config): e.g. AWS_DEFAULT_REGION=eu-west-1 {command}"
    )


def configured() -> str | None:
    """The region boto3 would use (environment, then the profile's config), or None."""
    import boto3
    from botocore.exceptions import ProfileNotFound

    try:
        region = boto3.session.Session().region_name
    except ProfileNotFound as exc:  # AWS_PROFILE names a profile the config files lack
        raise SystemExit(f"error: AWS_PROFILE: {exc}") from None
    return str(region) if region else None


def require(command: str) -> str:
    """The configured region; without one, exit with one line naming ``AWS_DEFAULT_REGION``."""
    region = configured()
    if region is None:
        raise NoRegion(message(command))
    return region
