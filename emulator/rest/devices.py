"""Device identities: /devices and /devices/{id} (create, read, list, update, delete)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..hub.errors import ArgumentInvalid
from .bodies import json_ok, quoted_etag, read_json_object
from .context import hub_of

MAX_LIST = 1000  # GET /devices?top=N: "any value outside 1-1000 is considered to be 1000" (SDK docs)


async def list_devices(request: web.Request) -> web.Response:
    top_text = request.query.get("top")
    top = MAX_LIST
    if top_text not in (None, ""):
        try:
            top = int(top_text)
        except ValueError:
            raise ArgumentInvalid(f"top must be a whole number, not '{top_text[:40]}'") from None
        if not 1 <= top <= MAX_LIST:
            top = MAX_LIST
    return json_ok([device.to_json() for device in hub_of(request).list_devices(top)])


async def get_device(request: web.Request) -> web.Response:
    device = hub_of(request).get_device(request.match_info["id"])
    return json_ok(device.to_json(), headers={"ETag": quoted_etag(device.etag)})


def _identity_fields(body: dict[str, Any], device_id: str) -> dict[str, Any]:
    """The parts of a Device body the emulator honours: status, reason and SAS keys."""
    body_id = body.get("deviceId")
    if body_id not in (None, device_id):
        raise ArgumentInvalid(f"deviceId '{str(body_id)[:140]}' in the body differs from '{device_id}' in the URL")
    if body.get("moduleId"):
        raise ArgumentInvalid("Module identities are not supported by the emulator")
    authentication = body.get("authentication") or {}
    if not isinstance(authentication, dict):
        raise ArgumentInvalid("authentication must be a JSON object")
    kind = authentication.get("type") or "sas"
    if kind != "sas":
        raise ArgumentInvalid(f"Authentication type '{str(kind)[:40]}' is not supported by the emulator; use sas")
    keys = authentication.get("symmetricKey") or {}
    if not isinstance(keys, dict):
        raise ArgumentInvalid("authentication.symmetricKey must be a JSON object")
    status = body.get("status")
    if status is not None and status not in ("enabled", "disabled"):
        raise ArgumentInvalid(f"status must be 'enabled' or 'disabled', not '{str(status)[:40]}'")
    reason = body.get("statusReason")
    if reason is not None and not isinstance(reason, str):
        raise ArgumentInvalid("statusReason must be a string")
    primary, secondary = keys.get("primaryKey"), keys.get("secondaryKey")
    for name, key in (("primaryKey", primary), ("secondaryKey", secondary)):
        if key is not None and not isinstance(key, str):
            raise ArgumentInvalid(f"authentication.symmetricKey.{name} must be a string")
    return {"status": status, "status_reason": reason, "primary_key": primary or None,
            "secondary_key": secondary or None}


async def put_device(request: web.Request) -> web.Response:
    """Create (no If-Match) or update (If-Match: etag or "*"), as IoT Hub's PUT /devices/{id}."""
    device_id = request.match_info["id"]
    fields = _identity_fields(await read_json_object(request, "device"), device_id)
    hub = hub_of(request)
    if_match = request.headers.get("If-Match")
    if if_match is None:
        device = hub.create_device(device_id, primary_key=fields["primary_key"],
                                   secondary_key=fields["secondary_key"], status=fields["status"] or "enabled",
                                   status_reason=fields["status_reason"])
    else:
        device = hub.update_device(device_id, if_match=if_match, **fields)
    return json_ok(device.to_json(), headers={"ETag": quoted_etag(device.etag)})


async def delete_device(request: web.Request) -> web.Response:
    hub_of(request).delete_device(request.match_info["id"], if_match=request.headers.get("If-Match"))
    return web.Response(status=204)
