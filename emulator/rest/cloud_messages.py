"""Cloud-to-device messages on the REST front: DELETE /devices/{id}/commands purges a device's queue.

Sending happens over AMQP only (emulator/amqp), as on IoT Hub; purging is an HTTPS call, answered with
IoT Hub's PurgeMessageQueueResult. It needs ServiceConnect, like every cloud-to-device operation.
"""

from __future__ import annotations

from aiohttp import web

from .bodies import json_ok
from .context import hub_of

PURGE_RIGHTS = ("ServiceConnect",)


async def purge_queue(request: web.Request) -> web.Response:
    device_id = request.match_info["id"]
    purged = hub_of(request).purge_cloud_messages(device_id)
    return json_ok({"totalMessagesPurged": purged, "deviceId": device_id, "moduleId": None})
