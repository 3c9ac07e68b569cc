"""Fakes of IoTHubRegistryManager / IoTHubJobManager with the SDK's signatures and return types.

They return the SDK's own msrest models (deserialized from the hub's JSON), so the CLI's conversion
back to JSON is exercised as with the real SDK. Errors are the real msrest exceptions.
"""

from __future__ import annotations

from types import SimpleNamespace

import copy
import json
from collections import defaultdict, deque
from typing import Any

import requests
from azure.iot.hub.iothub_registry_manager import QueryResult as RegistryQueryResult
from azure.iot.hub.models import CloudToDeviceMethodResult, Device, JobResponse, Twin
from msrest import Deserializer
from msrest.exceptions import ClientRequestError, HttpOperationError

HOST = "testhub.azure-devices.net"
SERVICE_KEY = "c2VydmljZS1rZXktZm9yLXRlc3RzLW9ubHktMTIzNDU2Nzg="
SERVICE_CS = f"HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey={SERVICE_KEY}"
DEVICE_KEY = "ZGV2aWNlLWtleS1wcmltYXJ5LWZvci10ZXN0cy0xMjM0NTY="


def http_error(status: int, body: Any = None, headers: dict | None = None) -> HttpOperationError:
    """The exception msrest raises for a non-200 answer, built from a real requests.Response."""
    response = requests.Response()
    response.status_code = status
    response.reason = {404: "Not Found", 429: "Too Many Requests"}.get(status, "Error")
    response.url = f"https://{HOST}/x"
    response._content = (json.dumps(body) if not isinstance(body, str) else body).encode() if body else b""
    response.headers.update(headers or {})
    return HttpOperationError(Deserializer(), response)


def connection_error(inner: Exception) -> ClientRequestError:
    """What msrest raises when requests fails (inner exception kept, as raise_with_traceback does)."""
    return ClientRequestError(f"Error occurred in request., {type(inner).__name__}: {inner}", inner)


def twin_json(device_id: str, reported: dict | None = None, desired: dict | None = None,
              tags: dict | None = None, etag: str = "AAAAAAAAAAE=", version: int = 2) -> dict:
    return {
        "deviceId": device_id, "etag": etag, "version": version, "status": "enabled",
        "connectionState": "Connected", "lastActivityTime": "2026-11-22T09:00:00.000Z", "tags": tags or {},
        "properties": {
            "desired": {**(desired or {}), "$metadata": {"$lastUpdated": "2026-11-22T08:00:00Z"},
                        "$version": 1},
            "reported": {**(reported or {}), "$metadata": {"$lastUpdated": "2026-11-22T08:00:00Z"},
                         "$version": 3},
        },
        "capabilities": {"iotEdge": False},
    }


def device_json(device_id: str, status: str = "enabled", primary: str = DEVICE_KEY,
                secondary: str = DEVICE_KEY[::-1]) -> dict:
    return {
        "deviceId": device_id, "generationId": "637000000000000000", "etag": "MA==",
        "connectionState": "Disconnected", "status": status, "lastActivityTime": "0001-01-01T00:00:00Z",
        "cloudToDeviceMessageCount": 0,
        "authentication": {"symmetricKey": {"primaryKey": primary, "secondaryKey": secondary},
                           "type": "sas"},
        "capabilities": {"iotEdge": False},
    }


def job_json(job_id: str, status: str, counts: tuple[int, int, int, int, int] | None = None,
             **extra: Any) -> dict:
    """counts: deviceCount, succeeded, failed, running, pending."""
    data = {"jobId": job_id, "type": "scheduleDeviceMethod", "status": status,
            "queryCondition": "deviceId IN ['d1']", "createdTime": "2026-11-22T09:00:00Z",
            "startTime": "2026-11-22T09:00:00Z", "maxExecutionTimeInSeconds": 3600,
            "cloudToDeviceMethod": {"methodName": "lockDoor", "responseTimeoutInSeconds": 30,
                                    "connectTimeoutInSeconds": 0}, **extra}
    if counts:
        total, ok, failed, running, pending = counts
        data["deviceJobStatistics"] = {"deviceCount": total, "succeededCount": ok, "failedCount": failed,
                                       "runningCount": running, "pendingCount": pending}
    return data


class FakeHub:
    """The state behind both fake managers, plus a record of every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []
        # name -> queue of exceptions raised by the next calls of that operation
        self.failures: dict[str, deque[Exception]] = defaultdict(deque)
        # device id -> queue of twin JSON returned by successive get_twin calls (the last one repeats)
        self.twins: dict[str, deque[dict]] = {}
        self.devices: dict[str, dict] = {}
        self.method_results: dict[tuple[str, str], dict] = {}
        self.jobs: dict[str, deque[dict]] = {}
        self.job_list: list[dict] = []
        self.registry_managers: list["FakeRegistryManager"] = []
        self.query_pages: list[tuple[list[dict], str | None]] = []  # (items, continuation token)
        self.settings_seen: list[Any] = []

    def fail(self, operation: str, *errors: Exception) -> None:
        self.failures[operation].extend(errors)

    def record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.failures[name]:
            raise self.failures[name].popleft()

    def calls_to(self, name: str) -> list[tuple]:
        return [args for call, args in self.calls if call == name]

    def set_twins(self, device_id: str, *twins: dict) -> None:
        self.twins[device_id] = deque(twins)

    def set_job_states(self, job_id: str, *states: dict) -> None:
        self.jobs[job_id] = deque(states)

    @staticmethod
    def _next(queue: deque) -> dict:
        return copy.deepcopy(queue.popleft() if len(queue) > 1 else queue[0])


class FakeRegistryManager:
    def __init__(self, hub: FakeHub):
        self.hub = hub
        # The msrest configuration the real manager carries (read timeout 100 s by default).
        self.protocol = SimpleNamespace(config=SimpleNamespace(connection=SimpleNamespace(timeout=100)))
        hub.registry_managers.append(self)

    def get_twin(self, device_id):
        self.hub.record("get_twin", device_id)
        if device_id not in self.hub.twins:
            raise http_error(404, {"Message": f"ErrorCode:DeviceNotFound;{device_id}",
                                   "ExceptionMessage": "Tracking ID:abc-G:1-TimeStamp:11/22/2026"})
        return Twin.deserialize(self.hub._next(self.hub.twins[device_id]))

    def update_twin(self, device_id, device_twin, etag=None):
        self.hub.record("update_twin", device_id, device_twin.serialize(), etag)
        current = self.hub._next(self.hub.twins[device_id])
        patch = device_twin.serialize()
        current["tags"].update(patch.get("tags") or {})
        current["properties"]["desired"].update((patch.get("properties") or {}).get("desired") or {})
        current["properties"]["desired"]["$version"] += 1
        current["etag"] = "AAAAAAAAAAI="
        self.hub.set_twins(device_id, current)
        return Twin.deserialize(current)

    def invoke_device_method(self, device_id, direct_method_request):
        self.hub.record("invoke_device_method", device_id, direct_method_request.serialize())
        result = self.hub.method_results.get((device_id, direct_method_request.method_name),
                                             {"status": 200, "payload": None})
        return CloudToDeviceMethodResult.deserialize(result)

    def query_iot_hub(self, query_specification, continuation_token=None, max_item_count=None):
        self.hub.record("query_iot_hub", query_specification.query, continuation_token, max_item_count)
        index = int(continuation_token or 0)
        items, token = self.hub.query_pages[index] if self.hub.query_pages else ([], None)
        result = RegistryQueryResult()
        result.type = "twin"
        result.items = [Twin.deserialize(item) for item in items]  # as the SDK does ("[Twin]")
        result.continuation_token = token
        return result

    def create_device_with_sas(self, device_id, primary_key, secondary_key, status, iot_edge=False):
        self.hub.record("create_device_with_sas", device_id, primary_key, secondary_key, status)
        if device_id in self.hub.devices:
            raise http_error(409, {"Message": f"ErrorCode:DeviceAlreadyExists;A device with ID "
                                              f"'{device_id}' is already registered."})
        self.hub.devices[device_id] = device_json(device_id, status, primary_key, secondary_key)
        return Device.deserialize(self.hub.devices[device_id])

    def get_device(self, device_id):
        self.hub.record("get_device", device_id)
        if device_id not in self.hub.devices:
            raise http_error(404, {"Message": f"ErrorCode:DeviceNotFound;{device_id}"})
        return Device.deserialize(self.hub.devices[device_id])

    def get_devices(self, max_number_of_devices=None):
        self.hub.record("get_devices", max_number_of_devices)
        return [Device.deserialize(d) for d in self.hub.devices.values()][:max_number_of_devices]

    def delete_device(self, device_id, etag=None):
        self.hub.record("delete_device", device_id, etag)
        if device_id not in self.hub.devices:
            raise http_error(404, {"Message": f"ErrorCode:DeviceNotFound;{device_id}"})
        del self.hub.devices[device_id]


class FakeJobManager:
    def __init__(self, hub: FakeHub):
        self.hub = hub

    def create_scheduled_job(self, job_id, job_request):
        self.hub.record("create_scheduled_job", job_id, job_request.serialize())
        created = {**job_request.serialize(), "status": "queued", "createdTime": "2026-11-22T09:00:00Z"}
        self.hub.jobs.setdefault(job_id, deque([created]))
        return JobResponse.deserialize(created)

    def get_scheduled_job(self, job_id):
        self.hub.record("get_scheduled_job", job_id)
        if job_id not in self.hub.jobs:
            raise http_error(404, {"Message": f"ErrorCode:JobNotFound;Job {job_id} not found"})
        return JobResponse.deserialize(self.hub._next(self.hub.jobs[job_id]))

    def cancel_scheduled_job(self, job_id):
        self.hub.record("cancel_scheduled_job", job_id)
        if job_id not in self.hub.jobs:
            raise http_error(404, {"Message": f"ErrorCode:JobNotFound;Job {job_id} not found"})
        cancelled = {**self.hub._next(self.hub.jobs[job_id]), "status": "cancelled"}
        self.hub.set_job_states(job_id, cancelled)
        return JobResponse.deserialize(cancelled)

    @property
    def protocol(self) -> SimpleNamespace:
        """The slice of the SDK's generated client the CLI reads jobs queries through (raw)."""
        return SimpleNamespace(jobs=_FakeJobsOperations(self.hub))


class _FakeJobsOperations:
    """IoT Hub's answer to GET /jobs/v2/query: a bare array, paged by x-ms-continuation."""

    api_version = "2021-04-12"
    _deserialize = Deserializer()

    def __init__(self, hub: FakeHub):
        self.hub = hub
        self._client = self

    def get(self, url, params=None, headers=None):
        return SimpleNamespace(url=url, params=dict(params or {}), headers=dict(headers or {}))

    def send(self, request, stream=False):
        job_type, job_status = request.params.get("jobType"), request.params.get("jobStatus")
        self.hub.record("query_scheduled_jobs", job_type, job_status)
        items = [j for j in self.hub.job_list
                 if (not job_type or j["type"] == job_type) and (not job_status or j["status"] == job_status)]
        start = int(request.headers.get("x-ms-continuation") or 0)
        size = int(request.headers["x-ms-max-item-count"])
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(items[start:start + size]).encode()
        response.headers["x-ms-item-type"] = "jobResponse"
        if start + size < len(items):
            response.headers["x-ms-continuation"] = str(start + size)
        return response


class FakeManagerFactory:
    def __init__(self, hub: FakeHub):
        self.hub = hub

    def registry_manager(self, settings):
        self.hub.settings_seen.append(settings)
        return FakeRegistryManager(self.hub)

    def job_manager(self, settings):
        self.hub.settings_seen.append(settings)
        return FakeJobManager(self.hub)
