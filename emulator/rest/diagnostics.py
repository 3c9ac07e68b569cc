"""What the emulator says about each service request: one DEBUG line per request, one INFO line per
refusal with the likely fix. Nothing logged here ever contains a key, a signature or a query string
other than the api-version (the Authorization header is only parsed, never printed)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone

from aiohttp import web

from hubsettings.sas import SasError, parse_token

from ..hub import Hub
from ..hub.errors import HubError
from .errors import InvalidProtocolVersion, RouteNotFound

log = logging.getLogger("emulator.rest")

#: Set on the request by the route guard: the rights any one of which the route needs.
RIGHTS_KEY = web.RequestKey("iothub_rights", tuple)


def _request_line(request: web.Request) -> str:
    version = request.query.get("api-version")
    return f"{request.method} {request.path}" + (f"?api-version={version[:40]}" if version else "")


def log_request(request: web.Request, status: int, error: HubError | None, elapsed_ms: float,
                hub: Hub) -> None:
    if log.isEnabledFor(logging.DEBUG):  # the hot path of every request: build nothing when off
        code = error.error_name if error is not None else "-"
        log.debug("%s %s %s %.1f ms", _request_line(request), status, code, elapsed_ms)
    if error is None or not log.isEnabledFor(logging.INFO):
        return
    fix = likely_fix(request, error, hub)
    log.info("%s -> %s %s: %s%s", _request_line(request), status, error.error_name, error.message,
             f" ({fix})" if fix else "")


def likely_fix(request: web.Request, error: HubError, hub: Hub) -> str:
    """One clause telling the user what to change, or "" when the error message says it all."""
    if error.http_status == 401:
        return _unauthorized_fix(request.headers.get("Authorization"), request.get(RIGHTS_KEY, ()), hub)
    if isinstance(error, RouteNotFound):
        return "IoT Hub has no such route; check the path against the IoT Hub REST reference"
    if isinstance(error, InvalidProtocolVersion):
        return "send ?api-version= with a version IoT Hub serves"
    fixes = {
        "DeviceNotFound": "create the device first, or check the device id",
        "DeviceNotOnline": "the device must be connected and subscribed to $iothub/methods/POST/#, "
                           "or raise connectTimeoutInSeconds",
        "GatewayTimeout": "the device did not answer in time: check its method handler, "
                          "or raise responseTimeoutInSeconds",
        "PreconditionFailed": "the If-Match etag is stale: read the resource again, or send If-Match: *",
        "ThrottlingException": "the emulator runs with --throttle: back off for Retry-After seconds",
    }
    return fixes.get(error.error_name, "")


def _unauthorized_fix(header: str | None, rights: Sequence[str], hub: Hub) -> str:
    if not header:
        return "send Authorization: SharedAccessSignature ... made from a service connection string"
    try:
        token = parse_token(header)
    except SasError as problem:
        return f"the Authorization header is not a usable SAS token ({problem})"
    host = token.resource_uri.split("/", 1)[0]
    if not hub.names_this_hub(host):
        return f"the SAS token's sr names host '{host[:100]}' but the hub is '{hub.host_name}'"
    if not token.policy:
        return "the token names no policy (skn): a device token cannot call the service API; use a service " \
               "connection string (SharedAccessKeyName=iothubowner)"
    policy = hub.policies.get(token.policy)
    if policy is None:
        return f"this hub has no policy '{token.policy[:64]}'; it has {', '.join(sorted(hub.policies))}"
    now = hub.now()
    if token.is_expired(now):
        expired_at = datetime.fromtimestamp(token.expiry, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"the token expired at {expired_at} ({int(now - token.expiry)} s ago): make a new one, and " \
               "check the client's clock"
    if not token.signature_matches(policy[0]):
        return f"the signature does not match policy {token.policy}'s key: the connection string's " \
               "SharedAccessKey is not this hub's key"
    if rights and not any(right in policy[1] for right in rights):
        return f"policy {token.policy} lacks {' or '.join(rights)}, which this route needs; use a policy " \
               "that has it (iothubowner has every right)"
    return ""
