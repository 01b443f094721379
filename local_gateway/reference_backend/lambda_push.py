"""Pushes to connected clients as the real backend sends them: by invoking the proxy's ``push``."""

from __future__ import annotations

import json
import threading
from typing import Any

from local_gateway.reference_backend.settings import BackendSettings


class LambdaPush:
    """Invokes ``push`` synchronously through the Lambda Invoke API, to report what it delivered."""

    def __init__(self, settings: BackendSettings) -> None:
        self._settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    def _lambda(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                self._client = boto3.client(
                    "lambda",
                    endpoint_url=self._settings.lambda_endpoint,
                    region_name=self._settings.region,
                    config=Config(retries={"max_attempts": 1}, read_timeout=60),
                )
            return self._client

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        if not self._settings.lambda_endpoint:
            return {"skipped": "no Lambda endpoint configured"}
        response = self._lambda().invoke(
            FunctionName=self._settings.push_function_name,
            InvocationType="RequestResponse",
            Payload=json.dumps(event).encode("utf-8"),
        )
        result: dict[str, Any] = json.loads(response["Payload"].read() or b"{}")
        return result
