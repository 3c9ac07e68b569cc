"""Registry and service statistics: GET /statistics/devices and GET /statistics/service."""

from __future__ import annotations

from aiohttp import web

from .bodies import json_ok
from .context import hub_of


async def device_statistics(request: web.Request) -> web.Response:
    devices = hub_of(request).list_devices()
    enabled = sum(1 for device in devices if device.enabled)
    return json_ok({"totalDeviceCount": len(devices), "enabledDeviceCount": enabled,
                    "disabledDeviceCount": len(devices) - enabled})


async def service_statistics(request: web.Request) -> web.Response:
    devices = hub_of(request).list_devices()
    return json_ok({"connectedDeviceCount": sum(1 for device in devices if device.connection_state == "Connected")})
