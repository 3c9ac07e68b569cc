"""Jobs v2 routes, service auth (keys, expiry, sr, rights), api-version and unknown routes."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from emulator.rest import create_app
from hubsettings import wellknown
from hubsettings.sas import build_token

from .conftest import API, iothub_error, token


def method_job(job_id: str, condition: str = "deviceId = 'myDeviceId'", **extra) -> dict:
    return {"jobId": job_id, "type": "scheduleDeviceMethod", "queryCondition": condition,
            "cloudToDeviceMethod": {"methodName": "lockDoor", "payload": {}, "responseTimeoutInSeconds": 5},
            **extra}


def twin_job(job_id: str, condition: str = "deviceId = 'myDeviceId'") -> dict:
    return {"jobId": job_id, "type": "scheduleUpdateTwin", "queryCondition": condition,
            "updateTwin": {"properties": {"desired": {"locked": True}}, "etag": "*"}}


async def test_create_get_and_cancel_a_future_job(rest, clock):
    start = "2023-11-15T00:00:00"  # after the fake clock's now, and naive: UTC
    created = await rest.call("PUT", "/jobs/v2/later", json=method_job("later", startTime=start))
    assert created.status == 200
    body = await created.json()
    assert body["status"] == "scheduled" and body["startTime"].startswith("2023-11-15T00:00:00")

    fetched = await rest.call("GET", "/jobs/v2/later")
    assert fetched.status == 200 and (await fetched.json())["jobId"] == "later"

    cancelled = await rest.call("POST", "/jobs/v2/later/cancel")
    assert cancelled.status == 200
    assert (await cancelled.json())["status"] == "cancelled"


async def test_twin_job_runs_and_updates_the_twin(rest, hub, scheduler):
    assert (await rest.call("PUT", "/jobs/v2/tj", json=twin_job("tj"))).status == 200
    await scheduler.tick()
    await scheduler.wait_idle()
    job = await (await rest.call("GET", "/jobs/v2/tj")).json()
    assert job["status"] == "completed"
    assert job["deviceJobStatistics"]["succeededCount"] == 1
    assert hub.get_twin("myDeviceId")["properties"]["desired"]["locked"] is True


async def test_duplicate_missing_and_invalid_jobs(rest):
    await rest.call("PUT", "/jobs/v2/j1", json=method_job("j1"))
    assert (await rest.call("PUT", "/jobs/v2/j1", json=method_job("j1"))).status == 409
    missing = await rest.call("GET", "/jobs/v2/nope")
    assert missing.status == 404
    assert (await iothub_error(missing)).name == "JobNotFound"
    assert (await rest.call("POST", "/jobs/v2/nope/cancel")).status == 404
    invalid = await rest.call("PUT", "/jobs/v2/j2", json=method_job("j2", condition="deviceId ="))
    assert invalid.status == 400
    assert (await rest.call("PUT", "/jobs/v2/j3", json={"jobId": "j3"})).status == 400
    assert (await rest.call("PUT", "/jobs/v2/j4", json=method_job("other-id"))).status == 400


async def test_query_jobs_answers_a_bare_array_filtered_by_type_and_status(rest):
    await rest.call("PUT", "/jobs/v2/m1", json=method_job("m1", startTime="2030-01-01T00:00:00Z"))
    await rest.call("PUT", "/jobs/v2/t1", json=twin_job("t1"))
    response = await rest.call("GET", "/jobs/v2/query")
    assert response.status == 200
    assert response.headers["x-ms-item-type"] == "jobResponse"
    assert "x-ms-continuation" not in response.headers
    assert [job["jobId"] for job in await response.json()] == ["m1", "t1"]
    by_type = await (await rest.call("GET", "/jobs/v2/query?jobType=scheduleUpdateTwin")).json()
    assert [job["jobId"] for job in by_type] == ["t1"]
    by_status = await (await rest.call("GET", "/jobs/v2/query?jobStatus=scheduled")).json()
    assert [job["jobId"] for job in by_status] == ["m1"]


async def test_query_jobs_pages_by_max_item_count_and_continuation(rest):
    for n in range(5):
        await rest.call("PUT", f"/jobs/v2/p{n}", json=method_job(f"p{n}", startTime="2030-01-01T00:00:00Z"))
    seen, token_header = [], None
    for _ in range(5):
        headers = {"x-ms-max-item-count": "2", **({"x-ms-continuation": token_header} if token_header else {})}
        response = await rest.call("GET", "/jobs/v2/query", headers=headers)
        page = await response.json()
        assert len(page) <= 2
        seen += [job["jobId"] for job in page]
        token_header = response.headers.get("x-ms-continuation")
        if not token_header:
            break
    assert seen == [f"p{n}" for n in range(5)]


@pytest.mark.parametrize("path", ["/jobs", "/jobs/"])
async def test_import_export_jobs_list_is_empty(rest, path):
    response = await rest.call("GET", path)
    assert response.status == 200 and await response.json() == []


async def test_unknown_import_export_job_is_404_job_not_found(rest):
    response = await rest.call("GET", "/jobs/export-1")
    assert response.status == 404
    assert (await iothub_error(response)).name == "JobNotFound"


async def test_star_condition_targets_every_device(rest, hub, scheduler):
    hub.create_device("second")
    job = twin_job("all")
    job["queryCondition"] = "*"
    assert (await rest.call("PUT", "/jobs/v2/all", json=job)).status == 200
    await scheduler.tick()
    await scheduler.wait_idle()
    done = await (await rest.call("GET", "/jobs/v2/all")).json()
    assert done["status"] == "completed"
    assert done["deviceJobStatistics"]["deviceCount"] == len(hub.registry) >= 2


async def test_method_job_takes_numbers_as_strings(rest):
    """The az extension sends its timeouts and maxExecutionTimeInSeconds as JSON strings."""
    job = method_job("strings", maxExecutionTimeInSeconds="3600", startTime="2030-01-01T00:00:00Z")
    job["cloudToDeviceMethod"].update(responseTimeoutInSeconds="30", connectTimeoutInSeconds="0")
    response = await rest.call("PUT", "/jobs/v2/strings", json=job)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["cloudToDeviceMethod"]["responseTimeoutInSeconds"] == 30
    assert body["maxExecutionTimeInSeconds"] == 3600


async def test_job_routes_without_a_scheduler_are_503(hub, clock):
    client = TestClient(TestServer(create_app(hub, None)))
    await client.start_server()
    try:
        response = await client.get(f"/jobs/v2/x?{API}", headers={"Authorization": token(now=clock())})
        assert response.status == 503
    finally:
        await client.close()


# ---- auth --------------------------------------------------------------------------------------

async def _get_devices(rest, authorization: str | None):
    headers = {} if authorization is None else {"Authorization": authorization}
    return await rest.client.get(f"/devices?{API}", headers=headers)


@pytest.mark.parametrize("resource", ["localhost:9443", "localhost", "LOCALHOST:443"])
async def test_sr_with_or_without_port_is_accepted(rest, clock, resource):
    response = await _get_devices(rest, token(resource=resource, now=clock()))
    assert response.status == 200


async def test_unauthorized_requests_are_401(rest, clock):
    now = clock()
    cases = {
        "no header": None,
        "not SAS": "Bearer abc",
        "wrong key": token(key=wellknown.POLICIES["service"][0], now=now),
        "expired": token(now=now - 7200),
        "other hub": token(resource="otherhub.azure-devices.net", now=now),
        "unknown policy": build_token("localhost", wellknown.POLICIES["iothubowner"][0], policy="nobody", now=now),
        "device key": build_token("localhost/devices/myDeviceId", wellknown.DEVICE_KEY, now=now),
    }
    for case, authorization in cases.items():
        response = await _get_devices(rest, authorization)
        assert response.status == 401, case
        error = await iothub_error(response)
        assert (error.name, error.message) == ("IotHubUnauthorizedAccess", "Unauthorized"), case


async def test_a_cached_token_still_expires(rest, clock):
    authorization = token(now=clock(), ttl=60)
    assert (await _get_devices(rest, authorization)).status == 200
    clock.advance(61)
    assert (await _get_devices(rest, authorization)).status == 401


@pytest.mark.parametrize("policy, verb, path, body, allowed", [
    ("registryRead", "GET", "/devices", None, True),
    ("registryRead", "PUT", "/devices/new1", {"deviceId": "new1"}, False),
    ("registryReadWrite", "PUT", "/devices/new1", {"deviceId": "new1"}, True),
    ("service", "GET", "/devices/myDeviceId", None, False),
    ("service", "GET", "/twins/myDeviceId", None, True),
    ("service", "PATCH", "/twins/myDeviceId", {"tags": {"a": 1}}, True),
    ("registryRead", "PATCH", "/twins/myDeviceId", {"tags": {"a": 1}}, False),
    ("registryRead", "POST", "/devices/query", {"query": "SELECT * FROM devices"}, True),
    ("registryRead", "POST", "/twins/myDeviceId/methods", {"methodName": "m"}, False),
    ("registryReadWrite", "POST", "/twins/myDeviceId/methods", {"methodName": "m"}, False),
    ("registryRead", "PUT", "/jobs/v2/pj", twin_job("pj"), False),
    ("service", "PUT", "/jobs/v2/pj", twin_job("pj"), True),
    ("registryReadWrite", "PUT", "/jobs/v2/pj", twin_job("pj"), True),
    ("registryRead", "GET", "/jobs/v2/query", None, True),
])
async def test_rights_by_route(rest, policy, verb, path, body, allowed):
    response = await rest.call(verb, path, json=body, policy=policy)
    if allowed:
        assert response.status != 401
    else:
        assert response.status == 401


async def test_method_with_service_policy_reaches_the_hub(rest):
    response = await rest.call("POST", "/twins/myDeviceId/methods", json={"methodName": "m"}, policy="service")
    assert response.status == 404  # authorised; the device is offline (404103)


# ---- api-version and routes --------------------------------------------------------------------

@pytest.mark.parametrize("api, status", [
    ("api-version=2021-04-12", 200), ("api-version=2024-03-31", 200),
    ("api-version=2016-11-14", 400), ("", 400),
])
async def test_api_versions(rest, api, status):
    response = await rest.call("GET", "/devices/myDeviceId", api=api)
    assert response.status == status
    if status == 400:
        assert (await response.json())["Message"].startswith("ErrorCode:InvalidProtocolVersion;")


async def test_unknown_route_is_404_json_and_wrong_verb_is_405(rest):
    unknown = await rest.call("GET", "/statistics/whatever")
    assert unknown.status == 404
    assert unknown.content_type == "application/json"
    assert (await unknown.json())["Message"].startswith("ErrorCode:NotFound;")
    wrong_verb = await rest.call("DELETE", "/twins/myDeviceId")
    assert wrong_verb.status == 405
    assert wrong_verb.content_type == "application/json"


async def test_a_body_over_the_limit_is_413_json(rest):
    response = await rest.call("PATCH", "/twins/myDeviceId", data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                               headers={"Content-Type": "application/json"})
    assert response.status == 413
    assert (await response.json())["Message"].startswith("ErrorCode:RequestEntityTooLarge;")


async def test_unexpected_failures_are_500_without_a_stack_trace(rest, hub, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(hub, "get_twin", broken)
    response = await rest.call("GET", "/twins/myDeviceId")
    assert response.status == 500
    text = await response.text()
    assert "secret internals" not in text and "Traceback" not in text
    assert (await response.json())["Message"].startswith("ErrorCode:ServerError;")
