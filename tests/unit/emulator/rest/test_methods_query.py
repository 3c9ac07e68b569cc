"""Direct methods and queries over REST: IoT Hub's error codes, range checks, paging headers."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from emulator.rest.paging import DEFAULT_PAGE_SIZE, QueryPages

from .conftest import iothub_error

METHOD = "/twins/myDeviceId/methods"


async def _until(predicate, what: str):
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


async def test_method_to_offline_device_is_404103(rest):
    response = await rest.call("POST", METHOD, json={"methodName": "reboot", "payload": ""})
    assert response.status == 404
    error = await iothub_error(response)
    assert (error.name, error.code, error.envelope) == ("DeviceNotOnline", 404103, "method")


async def test_method_round_trip_returns_the_device_answer(rest, hub, connections):
    hub.device_connected("myDeviceId")
    request = asyncio.ensure_future(rest.call("POST", METHOD, json={
        "methodName": "lockDoor", "payload": {"door": "front"}, "responseTimeoutInSeconds": 10}))
    await _until(lambda: connections.methods, "the method request to reach the device")
    device_id, call = connections.methods[0]
    assert (device_id, call.method_name, call.payload) == ("myDeviceId", "lockDoor", {"door": "front"})
    hub.method_response("myDeviceId", call.rid, 200, b'{"locked": true}')
    response = await request
    assert response.status == 200
    assert await response.json() == {"status": 200, "payload": {"locked": True}}


async def test_method_without_answer_is_504101(rest, hub, connections, clock):
    hub.device_connected("myDeviceId")
    request = asyncio.ensure_future(rest.call("POST", METHOD, json={"methodName": "reboot",
                                                                    "responseTimeoutInSeconds": 5}))
    await _until(lambda: connections.methods, "the method request to reach the device")
    clock.advance(5)
    hub.expire_due()
    response = await request
    assert response.status == 504
    error = await iothub_error(response)
    assert (error.name, error.code, error.envelope) == ("GatewayTimeout", 504101, "method")


async def test_connect_timeout_waits_for_the_device(rest, hub, connections):
    request = asyncio.ensure_future(rest.call("POST", METHOD, json={"methodName": "reboot",
                                                                    "connectTimeoutInSeconds": 30}))
    await _until(lambda: len(hub.methods) == 1, "the call to be waiting")
    assert connections.methods == []
    hub.device_connected("myDeviceId")
    _, call = connections.methods[0]
    hub.method_response("myDeviceId", call.rid, 201, b"")
    response = await request
    assert await response.json() == {"status": 201, "payload": None}


async def test_connect_timeout_passing_is_404103(rest, hub, clock):
    request = asyncio.ensure_future(rest.call("POST", METHOD, json={"methodName": "reboot",
                                                                    "connectTimeoutInSeconds": 10}))
    await _until(lambda: len(hub.methods) == 1, "the call to be waiting")
    clock.advance(10)
    hub.expire_due()
    assert (await request).status == 404


@pytest.mark.parametrize("body", [
    {"methodName": "m", "responseTimeoutInSeconds": 4},
    {"methodName": "m", "responseTimeoutInSeconds": 301},
    {"methodName": "m", "connectTimeoutInSeconds": -1},
    {"methodName": "m", "connectTimeoutInSeconds": 301},
    {"methodName": "m", "connectTimeoutInSeconds": True},
    {"methodName": "m", "responseTimeoutInSeconds": "thirty"},
    {"methodName": "m", "responseTimeoutInSeconds": "3"},
    {"methodName": "m", "connectTimeoutInSeconds": "1.5"},
    {"methodName": ""},
    {"payload": {}},
])
async def test_method_arguments_out_of_range_are_400(rest, hub, body):
    hub.device_connected("myDeviceId")
    response = await rest.call("POST", METHOD, json=body)
    assert response.status == 400
    assert (await iothub_error(response)).code == 400004


async def test_method_timeouts_as_numeric_strings_are_accepted(rest, hub, connections):
    """What the az extension sends: `"responseTimeoutInSeconds": "30", "connectTimeoutInSeconds": "0"`."""
    hub.device_connected("myDeviceId")
    request = asyncio.ensure_future(rest.call("POST", METHOD, json={
        "methodName": "m", "payload": {}, "responseTimeoutInSeconds": "30", "connectTimeoutInSeconds": "0"}))
    await _until(lambda: connections.methods, "the method request to reach the device")
    hub.method_response("myDeviceId", connections.methods[0][1].rid, 200, b"{}")
    assert (await request).status == 200


async def test_method_payload_over_128_kb_is_refused(rest, hub):
    hub.device_connected("myDeviceId")
    response = await rest.call("POST", METHOD, json={"methodName": "m", "payload": "x" * (128 * 1024)})
    assert response.status == 413
    assert (await iothub_error(response)).name == "MessageTooLarge"


async def test_method_to_unknown_device_is_404001(rest):
    response = await rest.call("POST", "/twins/nobody/methods", json={"methodName": "m"})
    assert response.status == 404
    error = await iothub_error(response)
    assert (error.name, error.code, error.envelope) == ("DeviceNotFound", 404001, "method")


async def _query(rest, text: str, **headers):
    return await rest.call("POST", "/devices/query", json={"query": text}, headers=headers)


async def test_query_returns_twins_with_item_type(rest, hub):
    hub.create_device("q1")
    hub.update_twin("q1", {"tags": {"building": "43"}})
    response = await _query(rest, "SELECT * FROM devices WHERE tags.building = '43'")
    assert response.status == 200
    rows = await response.json()
    assert [row["deviceId"] for row in rows] == ["q1"]
    assert response.headers["x-ms-item-type"] == "twin"
    assert "x-ms-continuation" not in response.headers


async def test_query_projection_and_count_are_raw(rest):
    response = await _query(rest, "SELECT COUNT() AS n FROM devices")
    assert response.headers["x-ms-item-type"] == "raw"
    assert await response.json() == [{"n": 1}]


async def test_query_pages_follow_continuation_tokens(rest, hub):
    for n in range(5):
        hub.create_device(f"page-{n}")
    text = "SELECT deviceId FROM devices WHERE STARTSWITH(deviceId, 'page-')"
    seen, continuation, pages = [], None, 0
    while True:
        headers = {"x-ms-max-item-count": "2"}
        if continuation:
            headers["x-ms-continuation"] = continuation
        response = await _query(rest, text, **headers)
        assert response.status == 200
        rows = await response.json()
        assert len(rows) <= 2
        seen += [row["deviceId"] for row in rows]
        pages += 1
        continuation = response.headers.get("x-ms-continuation")
        if not continuation:
            break
    assert pages == 3
    assert seen == [f"page-{n}" for n in range(5)]


async def test_continuation_of_another_query_or_garbage_is_400(rest, hub):
    for n in range(3):
        hub.create_device(f"c-{n}")
    first = await _query(rest, "SELECT * FROM devices", **{"x-ms-max-item-count": "1"})
    token = first.headers["x-ms-continuation"]
    other = await _query(rest, "SELECT deviceId FROM devices", **{"x-ms-continuation": token})
    assert other.status == 400
    garbage = await _query(rest, "SELECT * FROM devices", **{"x-ms-continuation": "%%%"})
    assert garbage.status == 400


@pytest.mark.parametrize("count", ["0", "-3", "lots"])
async def test_bad_max_item_count_is_400(rest, count):
    assert (await _query(rest, "SELECT * FROM devices", **{"x-ms-max-item-count": count})).status == 400


async def test_query_syntax_error_is_400_with_position(rest):
    response = await _query(rest, "SELECT * FROM devices WHERE")
    assert response.status == 400
    message = (await response.json())["Message"]
    assert message.startswith("ErrorCode:ArgumentInvalid;") and "line 1, column" in message


@pytest.mark.parametrize("body", [{}, {"query": ""}, {"query": 42}])
async def test_query_without_text_is_400(rest, body):
    assert (await rest.call("POST", "/devices/query", json=body)).status == 400


async def test_device_jobs_query_reads_the_scheduler(rest, hub, scheduler):
    hub.create_device("jobbed")
    scheduler.create({"jobId": "tj", "type": "scheduleUpdateTwin", "queryCondition": "deviceId = 'jobbed'",
                      "updateTwin": {"tags": {"x": 1}, "etag": "*"}})
    await scheduler.tick()
    await scheduler.wait_idle()
    response = await _query(rest, "SELECT * FROM devices.jobs WHERE jobId = 'tj'")
    assert response.headers["x-ms-item-type"] == "deviceJob"
    rows = await response.json()
    assert [(row["deviceId"], row["status"]) for row in rows] == [("jobbed", "completed")]


def test_pages_rerun_the_query_when_rows_were_evicted():
    pages = QueryPages(kept_results=1)
    runs = []

    def rows():
        runs.append(1)
        return [{"n": n} for n in range(3)]

    first = pages.page("q", rows, 1, None)
    pages.page("other", lambda: [{}, {}, {}], 1, None)  # evicts the first query's rows
    second = pages.page("q", rows, 1, first.continuation)
    assert second.rows == [{"n": 1}] and len(runs) == 2
    decoded = json.loads(base64.urlsafe_b64decode(second.continuation))
    assert decoded["o"] == 2
    assert pages.page("q", rows, DEFAULT_PAGE_SIZE, second.continuation).continuation is None
