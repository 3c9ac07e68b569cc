"""Direct methods: POST /twins/{deviceId}/methods -> 200 {"status", "payload"} from the device.

The hub model enforces IoT Hub's rules (payload <= 128 KB, responseTimeoutInSeconds 5..300,
connectTimeoutInSeconds 0..300, 404103 when the device is not connected in time, 504101 when it
does not answer in time); this handler only reads the request and waits for the outcome. Timeouts
may come as numeric strings ("30"), as IoT Hub accepts them (the az extension sends them so).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hubsettings import limits

from ..hub.errors import ArgumentInvalid
from ..hub.jobs_request import json_whole_number
from .bodies import json_ok, read_json_object
from .context import hub_of


def _seconds(body: dict[str, Any], name: str, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, str):
        value = json_whole_number(value)
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentInvalid(f"{name} must be a number of seconds")
    return value


async def invoke_method(request: web.Request) -> web.Response:
    body = await read_json_object(request, "method request")
    method_name = body.get("methodName")
    if not isinstance(method_name, str) or not method_name:
        raise ArgumentInvalid("methodName is required")
    result = await hub_of(request).invoke_method(
        request.match_info["deviceId"], method_name, body.get("payload"),
        response_timeout=_seconds(body, "responseTimeoutInSeconds", limits.METHOD_RESPONSE_TIMEOUT_DEFAULT),
        connect_timeout=_seconds(body, "connectTimeoutInSeconds", limits.METHOD_CONNECT_TIMEOUT_DEFAULT))
    return json_ok(result.to_json())
