"""Errors as IoT Hub's REST API reports them: one JSON body shape and header for every failure.

The hub model (emulator/hub/errors.py) and the job scheduler (emulator/hub/jobs_errors.py) raise
HubErrors that carry IoT Hub's 6-digit code and name; this module adds the few that only HTTP has
(bad api-version, unknown route, unreadable JSON) and turns any of them into a response.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from ..hub.errors import HubError

#: IoT Hub names the failure in this response header too (the SDKs only read the status and body).
ERROR_CODE_HEADER = "iothub-errorcode"


class InvalidProtocolVersion(HubError):
    error_code, error_name = 400001, "InvalidProtocolVersion"


class RequestBodyInvalid(HubError):
    """The body is not JSON, or not the JSON object the route needs."""

    error_code, error_name = 400004, "ArgumentInvalid"


class RouteNotFound(HubError):
    error_code, error_name = 404000, "NotFound"


class MethodNotAllowed(HubError):
    error_code, error_name = 405000, "MethodNotAllowed"


class RequestTooLarge(HubError):
    error_code, error_name = 413001, "RequestEntityTooLarge"


class QueryInvalid(HubError):
    """Query text IoT Hub cannot parse; the message says where (line and column)."""

    error_code, error_name = 400004, "ArgumentInvalid"


class ServerError(HubError):
    error_code, error_name = 500001, "ServerError"


class ServiceUnavailable(HubError):
    error_code, error_name = 503001, "ServiceUnavailable"


def error_body(error: HubError) -> dict[str, Any]:
    """`{"Message": "ErrorCode:<name>;<text>", "ExceptionMessage": "Tracking ID:..", "ErrorCode": <code>}`.

    The first two keys are what IoT Hub sends for registry and twin errors; the numeric ErrorCode is
    what it sends for method errors (404103, 504101), so clients that look for either find it.
    """
    stamp = datetime.now(timezone.utc).strftime("%m/%d/%Y %H:%M:%S")
    return {
        "Message": f"ErrorCode:{error.error_name};{error.message}",
        "ExceptionMessage": f"Tracking ID:{uuid.uuid4().hex}-G:0-TimeStamp:{stamp}",
        "ErrorCode": error.error_code,
    }


def error_response(error: HubError) -> web.Response:
    return web.json_response(error_body(error), status=error.http_status,
                             headers={ERROR_CODE_HEADER: error.error_name})


def from_http_exception(exc: web.HTTPException) -> HubError:
    """aiohttp's own refusals (unknown route, wrong verb, body too large) as IoT Hub errors."""
    if exc.status == 404:
        return RouteNotFound("No such resource on this IoT Hub")
    if exc.status == 405:
        return MethodNotAllowed(f"This resource does not accept {getattr(exc, 'method', 'this')} requests")
    if exc.status == 413:
        return RequestTooLarge("The request body is too large")
    error = HubError(exc.reason or "Request refused")
    error.error_code = exc.status * 1000  # instance attributes: the status survives
    error.error_name = (exc.reason or "Error").replace(" ", "")
    return error
