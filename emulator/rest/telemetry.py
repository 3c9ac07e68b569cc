"""GET /_emulator/devices/{id}/messages: the device-to-cloud messages the emulator holds for a device.

An emulator-only debugging aid (IoT Hub has none): programs read telemetry as on Azure, from the
Event Hubs-compatible endpoint (azure-eventhub, `iothub-service monitor`). Authorised like that
endpoint: ServiceConnect. Answers {"messages": [...]}, oldest first, from what the telemetry log
still retains for the device.
"""

from __future__ import annotations

from aiohttp import web

from .bodies import json_ok
from .context import hub_of


async def device_messages(request: web.Request) -> web.Response:
    hub = hub_of(request)
    device_id = request.match_info["id"]
    hub.get_device(device_id)  # 404 DeviceNotFound for an unknown device, not an empty list
    return json_ok({"messages": [message.to_json() for message in hub.telemetry.messages(device_id)]})
