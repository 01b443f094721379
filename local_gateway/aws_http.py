"""AWS-shaped HTTP answers shared by the emulated APIs."""

from __future__ import annotations

from aiohttp import web

from local_gateway.aws_shapes import new_request_id


def aws_error(status: int, error_type: str, message: str | None) -> web.Response:
    """An AWS REST-JSON error: botocore reads the code from ``x-amzn-ErrorType``."""
    return web.json_response(
        {"message": message, "Type": "User"},
        status=status,
        headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": new_request_id()},
    )
