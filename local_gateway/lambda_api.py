"""The local Lambda Invoke API for the app's functions that are invoked, not routed.

``POST /2015-03-31/functions/{name}/invocations``: ``Event`` answers 202 and
runs the function in a worker thread; ``RequestResponse`` answers 200 with the
result (``X-Amz-Function-Error: Unhandled`` when it raised); ``DryRun`` 204.
Payload limits are Lambda's; signatures are accepted unchecked.
"""

from __future__ import annotations

import json

from aiohttp import web

from local_gateway.aws_http import aws_error
from local_gateway.aws_shapes import new_request_id
from local_gateway.runtime import AppRuntime
from local_gateway.tasks import BackgroundTasks

#: Lambda's payload limits: asynchronous (Event) and synchronous invocations.
MAX_EVENT_PAYLOAD = 256 * 1024
MAX_SYNC_PAYLOAD = 6 * 1024 * 1024


class LambdaInvokeApi:
    def __init__(self, runtime: AppRuntime, *, tasks: BackgroundTasks) -> None:
        self.runtime = runtime
        self.tasks = tasks

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/2015-03-31/functions/{name}/invocations", self.invoke)

    async def invoke(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        key = self.runtime.function_key(name)
        if key is None:
            return aws_error(404, "ResourceNotFoundException", f"Function not found: {name}")
        invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        payload = await request.read()
        limit = MAX_EVENT_PAYLOAD if invocation_type == "Event" else MAX_SYNC_PAYLOAD
        if len(payload) > limit:
            return aws_error(
                413, "RequestEntityTooLargeException", f"Request must be smaller than {limit} bytes"
            )
        try:
            event = json.loads(payload) if payload else {}
        except ValueError:
            return aws_error(400, "InvalidRequestContentException", "Could not parse request body into json")
        function_name = name.split(":function:")[-1].split(":")[0]
        request_id = new_request_id()
        if invocation_type == "DryRun":
            return web.Response(status=204, headers={"x-amzn-RequestId": request_id})
        if invocation_type == "Event":
            self.tasks.spawn(self.runtime.invoke(key, function_name, event))
            return web.Response(status=202, headers={"x-amzn-RequestId": request_id})
        if invocation_type != "RequestResponse":
            return aws_error(400, "InvalidParameterValueException", f"bad invocation type {invocation_type}")
        invocation = await self.runtime.invoke(key, function_name, event)
        headers = {"x-amzn-RequestId": request_id, "X-Amz-Executed-Version": "$LATEST"}
        if invocation.error is not None:
            headers["X-Amz-Function-Error"] = "Unhandled"
            body = {
                "errorMessage": str(invocation.error),
                "errorType": type(invocation.error).__name__,
                "stackTrace": [],
            }
            return web.json_response(body, headers=headers)
        return web.json_response(invocation.result, headers=headers)
