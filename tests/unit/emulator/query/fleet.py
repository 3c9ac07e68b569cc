"""A small fleet of twin documents (as GET /twins returns them) and per-device job records."""

from __future__ import annotations


def twin(device_id: str, *, status: str = "enabled", connection: str = "Disconnected",
         tags: dict | None = None, desired: dict | None = None, reported: dict | None = None) -> dict:
    document = {
        "deviceId": device_id,
        "etag": "AAAAAAAAAAE=",
        "version": 2,
        "status": status,
        "connectionState": connection,
        "lastActivityTime": "2026-11-20T10:00:00Z",
        "properties": {
            "desired": {**(desired or {}), "$metadata": {}, "$version": 1},
            "reported": {**(reported or {}), "$metadata": {}, "$version": 1},
        },
        "capabilities": {"iotEdge": False},
    }
    if tags is not None:
        document["tags"] = tags
    return document


FLEET = [
    twin("thermostat-1", connection="Connected",
         tags={"location": {"region": "US", "plant": "Redmond43"}, "floor": 1},
         desired={"fanSpeed": 3}, reported={"firmware": "1.0.0", "temperature": 21.5, "isOn": True}),
    twin("thermostat-2", connection="Connected",
         tags={"location": {"region": "EU", "plant": "Dublin1"}, "floor": 2},
         reported={"firmware": "1.1.0", "temperature": 25, "isOn": False}),
    twin("door-1", tags={"location": {"region": "US", "plant": "Redmond43"}, "floor": "ground"},
         reported={"firmware": "1.0.0", "locked": True, "temperature": None}),
    twin("door-2", status="disabled", tags={"location": {"region": "APAC"}},
         reported={"firmware": "2.0.0", "locked": False}),
    twin("sensor-1", reported={"temperature": "hot"}),
]

JOB_RECORDS = [
    {"deviceId": "thermostat-1", "jobId": "reboot-1", "jobType": "scheduleDeviceMethod",
     "status": "completed", "startTimeUtc": "2026-11-20T10:00:00Z", "endTimeUtc": "2026-11-20T10:00:05Z",
     "createdDateTimeUtc": "2026-11-20T09:59:00Z", "lastUpdatedDateTimeUtc": "2026-11-20T10:00:05Z",
     "outcome": {"deviceMethodResponse": {"status": 200, "payload": {"rebooted": True}}}},
    {"deviceId": "door-1", "jobId": "reboot-1", "jobType": "scheduleDeviceMethod",
     "status": "failed", "startTimeUtc": "2026-11-20T10:00:00Z", "endTimeUtc": "2026-11-20T10:00:01Z",
     "createdDateTimeUtc": "2026-11-20T09:59:00Z", "lastUpdatedDateTimeUtc": "2026-11-20T10:00:01Z",
     "error": {"code": "DeviceNotOnline", "description": "Timed out waiting for device to connect."}},
    {"deviceId": "thermostat-1", "jobId": "twin-1", "jobType": "scheduleUpdateTwin",
     "status": "running", "startTimeUtc": "2026-11-21T10:00:00Z",
     "createdDateTimeUtc": "2026-11-21T09:00:00Z", "lastUpdatedDateTimeUtc": "2026-11-21T10:00:00Z"},
]
