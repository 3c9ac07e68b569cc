"""Errors as IoT Hub's REST API reports them: the body shape of each error family, and the header.

The hub model (emulator/hub/errors.py) and the job scheduler (emulator/hub/jobs_errors.py) raise
HubErrors that carry IoT Hub's 6-digit code and name; this module adds the few that only HTTP has
(bad api-version, unknown route, unreadable JSON) and turns any of them into a response.

IoT Hub answers in one of two envelopes, always with the error's name in an `iothub-errorcode` header:

- registry, twins, queries, jobs, authorization, throttling:
  `{"Message": "ErrorCode:DeviceNotFound;<text>", "ExceptionMessage": "Tracking ID:<id>-G:0-TimeStamp:<time>"}`
- direct methods: the numeric code in a JSON object, itself sent as a *string* in "Message":
  `{"Message": "{\"errorCode\":404103,\"trackingId\":..,\"message\":..,\"info\":{},\"timestampUtc\":..}",
  "ExceptionMessage": ""}`
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from aiohttp import web

from ..hub.errors import ArgumentInvalid, HubError
from ..jsontext import compact_json

ERROR_CODE_HEADER = "iothub-errorcode"


class Envelope(Enum):
    REGISTRY = "registry"
    METHOD = "method"


class InvalidProtocolVersion(HubError):
    error_code, error_name = 400001, "InvalidProtocolVersion"


class RequestBodyInvalid(HubError):
    """The body is not JSON, or not the JSON object the route needs."""

    error_code, error_name = 400004, "ArgumentInvalid"


class QueryInvalid(HubError):
    """Query text IoT Hub cannot parse; the message says where (line and column)."""

    error_code, error_name = 400004, "ArgumentInvalid"


class RouteNotFound(HubError):
    error_code, error_name = 404000, "NotFound"


class MethodNotAllowed(HubError):
    error_code, error_name = 405000, "MethodNotAllowed"


class RequestTooLarge(HubError):
    error_code, error_name = 413001, "RequestEntityTooLarge"


class ServerError(HubError):
    error_code, error_name = 500001, "ServerError"


class ServiceUnavailable(HubError):
    error_code, error_name = 503001, "ServiceUnavailable"


def _tracking_id(now: datetime) -> str:
    return f"{uuid.uuid4().hex}-G:0-TimeStamp:{now.strftime('%m/%d/%Y %H:%M:%S')}"


def error_body(error: HubError, envelope: Envelope = Envelope.REGISTRY) -> dict[str, Any]:
    """The JSON body IoT Hub sends for `error` in `envelope` (see the module docstring)."""
    now = datetime.now(timezone.utc)
    if envelope is Envelope.METHOD:
        inner = {
            "errorCode": error.error_code,
            "trackingId": _tracking_id(now),
            "message": error.wire_message,
            "info": {},
            "timestampUtc": now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z",  # .NET writes 7 digits
        }
        return {"Message": compact_json(inner), "ExceptionMessage": ""}
    return {
        "Message": f"ErrorCode:{error.error_name};{error.wire_message}",
        "ExceptionMessage": f"Tracking ID:{_tracking_id(now)}",
    }


def error_response(error: HubError, envelope: Envelope = Envelope.REGISTRY) -> web.Response:
    return web.json_response(error_body(error, envelope), status=error.http_status,
                             headers={ERROR_CODE_HEADER: error.error_name})


def from_http_exception(exc: web.HTTPException, request: web.Request) -> HubError:
    """aiohttp's own refusals (unknown route, wrong verb, body too large) as IoT Hub errors."""
    if exc.status == 404:
        return RouteNotFound(f"{request.method} {request.path} is not a resource of this IoT hub")
    if exc.status == 405:
        return MethodNotAllowed(f"{request.path} does not accept {request.method} requests")
    if exc.status == 413:
        return RequestTooLarge("The request body is too large")
    if exc.status == 400:
        return ArgumentInvalid(f"The request is malformed: {exc.reason}")
    return ServerError(f"The request was refused: {exc.status} {exc.reason}")
