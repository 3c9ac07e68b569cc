"""Bad input on the service port (HTTPS REST), through the real TLS listener: broken JSON on every
route that takes a body, invalid device ids, query syntax errors, huge queries, bad api-versions and
headers. Always a 4xx in IoT Hub's error shape, never a 500 or a stack trace, and a connected device
keeps being served throughout.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqttcodec import Publish

from .support import RawDevice

BODY_ROUTES = [("PUT", "/devices/{id}-x"), ("PATCH", "/twins/{id}"), ("PUT", "/twins/{id}"),
               ("POST", "/twins/{id}/methods"), ("POST", "/devices/query"), ("PUT", "/jobs/v2/job-{id}")]

BROKEN_BODIES = {
    "empty": b"",
    "truncated": b'{"deviceId": "d1", "status": ',
    "not utf-8": b"\xff\xfe\x00{}",
    "nested too deep": b"[" * 100_000 + b"]" * 100_000,
    "NaN": b'{"a": NaN}',
    "Infinity": b'{"responseTimeoutInSeconds": Infinity}',
    "huge integer": b'{"a": ' + b"9" * 50_000 + b"}",
    "a string": b'"hello"',
    "null": b"null",
    "an array": b"[1, 2, 3]",
    "trailing garbage": b'{"a": 1} xyz',
    "wrong types": b'{"deviceId": 5, "methodName": [], "query": {}, "properties": "x", "tags": 7, "jobId": null}',
}


def assert_iothub_error(response, *statuses: int) -> None:
    """A refusal in one of IoT Hub's two envelopes (emulator/rest/errors.py), named in the header."""
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    name = response.headers["iothub-errorcode"]
    body = response.json()
    assert set(body) == {"Message", "ExceptionMessage"}, body
    if body["Message"].startswith("{"):  # direct methods: the numeric code inside a JSON string
        inner = json.loads(body["Message"])
        assert inner["errorCode"] // 1000 == response.status_code and body["ExceptionMessage"] == ""
    else:
        assert body["Message"].startswith(f"ErrorCode:{name};")
        assert body["ExceptionMessage"].startswith("Tracking ID:")
    for leak in ("Traceback", "File \"", "Error:"):
        assert leak not in response.text


@pytest.fixture(scope="module")
def bystander(emulator):
    """A device connected for the whole module, answering methods from its own event loop thread."""
    device_id, key = emulator.add_device("bystander")
    loop = asyncio.new_event_loop()
    device = loop.run_until_complete(RawDevice.connected(emulator, device_id, key))

    async def answer_methods():
        while True:
            request = await device.expect(lambda p: isinstance(p, Publish) and "/methods/POST/" in p.topic,
                                          timeout=3600)
            if request is None:
                return
            rid = request.topic.split("$rid=")[1]
            device.publish(f"$iothub/methods/res/200/?$rid={rid}", request.payload or b"null")

    task = loop.create_task(answer_methods())

    def run() -> None:
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            pass
        loop.run_until_complete(device.close())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield device_id
    loop.call_soon_threadsafe(task.cancel)
    thread.join(10)


def assert_bystander_served(emulator, device_id: str) -> None:
    response = emulator.rest().call("POST", f"/twins/{device_id}/methods",
                                    json_body={"methodName": "ping", "payload": {"n": 1}, "responseTimeoutInSeconds": 10})
    assert response.status_code == 200, response.text
    assert response.json() == {"status": 200, "payload": {"n": 1}}


@pytest.mark.parametrize("verb, path", BODY_ROUTES)
def test_broken_json_on_every_route_is_400(emulator, bystander, verb, path):
    device_id, _ = emulator.add_device()
    rest = emulator.rest()
    for name, body in BROKEN_BODIES.items():
        response = rest.call(verb, path.format(id=device_id), data=body, headers={"Content-Type": "application/json"})
        assert_iothub_error(response, 400)
    twin = emulator.threaded.get_twin(device_id)
    assert twin["version"] == 1 and twin["tags"] == {}
    assert_bystander_served(emulator, bystander)


@pytest.mark.parametrize("device_id", [
    "a" * 129, "has space", "slash%2Fin", "null%00byte", "ünïcode", "tab%09", "%F0%9F%98%80", "semi;colon",
    "back%5Cslash", "angle%3Cb%3E",
])
def test_invalid_device_ids_are_refused_cleanly(emulator, device_id):
    rest = emulator.rest()
    created = rest.call("PUT", f"/devices/{device_id}", json_body={"deviceId": None})
    assert_iothub_error(created, 400, 404)
    for verb, path, body in [("GET", f"/devices/{device_id}", None), ("GET", f"/twins/{device_id}", None),
                             ("DELETE", f"/devices/{device_id}", None),
                             ("PATCH", f"/twins/{device_id}", {"tags": {"a": 1}}),
                             ("POST", f"/twins/{device_id}/methods", {"methodName": "m"})]:
        assert_iothub_error(rest.call(verb, path, json_body=body), 400, 404)


@pytest.mark.parametrize("device_id", ["percent%25", "quote'", "star*", "dollar$sign", "a" * 128, "x:y.z+(1)@!"])
def test_device_ids_with_the_special_characters_iot_hub_allows_work(emulator, device_id):
    """The control for the refusals above: IoT Hub's allowed set (- : . + % _ # * ? ! ( ) , = @ $ ')."""
    rest = emulator.rest()
    assert rest.call("PUT", f"/devices/{device_id}", json_body={}).status_code == 200
    assert rest.call("GET", f"/twins/{device_id}").status_code == 200
    assert rest.call("DELETE", f"/devices/{device_id}", headers={"If-Match": "*"}).status_code == 204


QUERY_SYNTAX_ERRORS = [
    "SELECT", "SELECT * FROM", "SELECT * FROM nowhere", "SELECT * FROM devices WHERE", "SELECT * FROM devices WHERE (",
    "SELECT * FROM devices WHERE tags.x = 'unterminated", "DROP TABLE devices", "SELECT * FROM devices; SELECT 1",
    "SELECT * FROM devices WHERE deviceId = 'a' ORDER", "SELECT * FROM devices WHERE tags.x = 1 ANDROID",
    "SELECT * FROM devices WHERE tags.x ==== 1", "\x00\x01\x02",
]


@pytest.mark.parametrize("query", QUERY_SYNTAX_ERRORS)
def test_query_syntax_errors_get_400(emulator, bystander, query):
    """IoT Hub answers 400 ArgumentInvalid to a query it cannot parse, saying where; never 200."""
    response = emulator.rest().call("POST", "/devices/query", json_body={"query": query})
    assert_iothub_error(response, 400)
    assert response.json()["Message"].startswith("ErrorCode:ArgumentInvalid;") and "column" in response.text


@pytest.mark.parametrize("query", [
    "SELECT * FROM devices WHERE " + "(" * 5000 + "deviceId = 'a'" + ")" * 5000,
    "SELECT * FROM devices WHERE " + " AND ".join(f"tags.t{i} = {i}" for i in range(3000)),
    "SELECT * FROM devices WHERE deviceId IN [" + ",".join(f"'d{i}'" for i in range(20000)) + "]",
    "SELECT * FROM devices WHERE " + "NOT " * 5000 + "deviceId = 'a'",
    "SELECT " + ", ".join(f"properties.reported.p{i}" for i in range(5000)) + " FROM devices",
    "SELECT * FROM devices WHERE tags.x = " + "1" * 50_000,
    "SELECT * FROM devices WHERE deviceId = '\ud800'".encode("utf-8", "surrogatepass").decode("latin-1"),
])
def test_huge_and_odd_queries_never_fail_the_server(emulator, bystander, query):
    """Past IoT Hub's limits (length, nesting, number range) a query is refused 400; within them it runs."""
    response = emulator.rest().call("POST", "/devices/query", json_body={"query": query})
    if response.status_code == 200:
        assert isinstance(response.json(), list)
    else:
        assert_iothub_error(response, 400)


def test_a_query_bigger_than_the_body_limit_is_413(emulator, bystander):
    response = emulator.rest().call("POST", "/devices/query",
                                    json_body={"query": "SELECT * FROM devices WHERE tags.x = '" + "x" * 2_000_000 + "'"})
    assert_iothub_error(response, 413)
    assert_bystander_served(emulator, bystander)


@pytest.mark.parametrize("api", [None, "api-version=", "api-version=2099-01-01", "api-version=" + "9" * 5000,
                                 "api-version=%FF%FE", "api-version=2021-04-12%00"])
def test_bad_api_versions_are_400(emulator, api):
    response = emulator.rest().call("GET", "/devices", api=api)
    assert_iothub_error(response, 400)
    assert "InvalidProtocolVersion" in response.json()["Message"]


@pytest.mark.parametrize("headers", [
    {"x-ms-max-item-count": "lots"}, {"x-ms-max-item-count": "-5"}, {"x-ms-max-item-count": "1.5"},
    {"x-ms-continuation": "not-a-token"}, {"x-ms-continuation": "eyJyIjogMX0="},
    {"x-ms-continuation": "A" * 8000},
])
def test_bad_paging_headers_are_400(emulator, headers):
    response = emulator.rest().call("POST", "/devices/query", json_body={"query": "SELECT * FROM devices"},
                                    headers=headers)
    assert_iothub_error(response, 400)


@pytest.mark.parametrize("if_match", ['"stale"', "no-quotes", "*garbage*", '"' + "a" * 5000 + '"'])
def test_bad_etags_are_412_or_400(emulator, if_match):
    device_id, _ = emulator.add_device()
    response = emulator.rest().call("PATCH", f"/twins/{device_id}", json_body={"tags": {"a": 1}},
                                    headers={"If-Match": if_match})
    assert_iothub_error(response, 400, 412)


@pytest.mark.parametrize("body", [
    {"methodName": "m", "responseTimeoutInSeconds": 1e999},
    {"methodName": "m", "responseTimeoutInSeconds": "thirty"},
    {"methodName": "m", "responseTimeoutInSeconds": "4"},
    {"methodName": "m", "responseTimeoutInSeconds": 4},
    {"methodName": "m", "connectTimeoutInSeconds": -1},
    {"methodName": "m", "connectTimeoutInSeconds": 301},
    {"methodName": ""}, {"methodName": None}, {"payload": {}},
])
def test_bad_method_requests_are_400(emulator, body):
    device_id, _ = emulator.add_device()
    assert_iothub_error(emulator.rest().call("POST", f"/twins/{device_id}/methods", json_body=body), 400)


@pytest.mark.parametrize("patch", [
    {"properties": {"desired": {"big": "x" * (33 * 1024)}}},
    {"tags": {"big": "x" * (9 * 1024)}},
    {"properties": {"desired": {"bad.key": 1}}},
    {"properties": {"desired": {"$bad": 1}}},
    {"properties": {"desired": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {"k": 1}}}}}}}}}}}}},
    {"properties": {"reported": {"a": 1}}},
    {"properties": {"desired": []}},
])
def test_bad_twin_patches_are_refused_and_change_nothing(emulator, patch):
    device_id, _ = emulator.add_device()
    response = emulator.rest().call("PATCH", f"/twins/{device_id}", json_body=patch)
    assert_iothub_error(response, 400, 413)
    twin = emulator.threaded.get_twin(device_id)
    assert twin["version"] == 1 and twin["properties"]["desired"]["$version"] == 1


def test_bad_job_requests_are_400(emulator):
    rest = emulator.rest()
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    base = {"jobId": job_id, "type": "scheduleDeviceMethod", "queryCondition": "deviceId = 'x'",
            "cloudToDeviceMethod": {"methodName": "m", "responseTimeoutInSeconds": 30},
            "startTime": "2020-01-01T00:00:00Z", "maxExecutionTimeInSeconds": 60}
    for change in [{"type": "launchMissiles"}, {"queryCondition": "deviceId = "}, {"startTime": "yesterday"},
                   {"startTime": 12}, {"maxExecutionTimeInSeconds": -5}, {"maxExecutionTimeInSeconds": "x"},
                   {"cloudToDeviceMethod": None}, {"jobId": "another-id"}, {"cloudToDeviceMethod": {"methodName": ""}}]:
        assert_iothub_error(rest.call("PUT", f"/jobs/v2/{job_id}", json_body={**base, **change}), 400)
    for path in ("/jobs/v2/query?jobType=bogus", "/jobs/v2/query?jobStatus=bogus"):
        response = rest.call("GET", path)
        assert response.status_code in (200, 400)
        if response.status_code == 400:
            assert_iothub_error(response, 400)
    assert_iothub_error(rest.call("GET", f"/jobs/v2/{job_id}"), 404)
    assert_iothub_error(rest.call("POST", f"/jobs/v2/{job_id}/cancel"), 404)


@pytest.fixture(scope="module")
def fuzz_target(emulator):
    return emulator.add_device("fuzz-target")[0]


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(BODY_ROUTES + [("GET", "/devices"), ("GET", "/twins/{id}"),
                                            ("POST", "/jobs/v2/job-{id}/cancel"), ("GET", "/jobs/v2/query")]),
       body=st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode),
                      st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                                   lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(
                                       ["deviceId", "methodName", "payload", "query", "properties", "desired", "tags",
                                        "jobId", "type", "status", "authentication", "responseTimeoutInSeconds",
                                        "startTime", "updateTwin", "cloudToDeviceMethod", "queryCondition", "etag"]) | st.text(max_size=6),
                                       c, max_size=5), max_leaves=12).map(lambda v: json.dumps(v).encode())))
def test_random_bodies_on_random_routes_never_get_a_500(emulator, fuzz_target, route, body):
    verb, path = route
    response = emulator.rest().call(verb, path.format(id=fuzz_target), data=body,
                                    headers={"Content-Type": "application/json"})
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert_iothub_error(response, response.status_code)


# ---- what IoT Hub accepts (the controls for the refusals above) -----------------------------------


def test_paths_with_a_trailing_slash_are_served(emulator):
    """The Node service SDK lists devices as GET /devices/?api-version=...; IoT Hub serves it."""
    device_id, _ = emulator.add_device()
    rest = emulator.rest()
    listed = rest.call("GET", "/devices/")
    assert listed.status_code == 200 and isinstance(listed.json(), list)
    assert rest.call("GET", f"/twins/{device_id}/").json()["deviceId"] == device_id


def test_method_timeouts_as_strings_as_the_az_extension_sends_them(emulator, bystander):
    response = emulator.rest().call("POST", f"/twins/{bystander}/methods", json_body={
        "methodName": "ping", "payload": {"n": 2}, "responseTimeoutInSeconds": "30", "connectTimeoutInSeconds": "0"})
    assert response.status_code == 200, response.text
    assert response.json() == {"status": 200, "payload": {"n": 2}}


def test_method_to_an_offline_device_answers_in_the_direct_method_envelope(emulator):
    device_id, _ = emulator.add_device()
    response = emulator.rest().call("POST", f"/twins/{device_id}/methods", json_body={"methodName": "m"})
    assert_iothub_error(response, 404)
    assert response.headers["iothub-errorcode"] == "DeviceNotOnline"
    inner = json.loads(response.json()["Message"])
    assert inner["errorCode"] == 404103 and set(inner) == {"errorCode", "trackingId", "message", "info",
                                                           "timestampUtc"}


def test_every_device_job_with_numbers_as_strings_then_the_jobs_query_shape(emulator):
    """queryCondition "*" (az's help, Microsoft's jobs guide) and az's string numbers; the jobs query
    answers a bare array with x-ms-item-type, as /devices/query does."""
    device_id, _ = emulator.add_device()
    rest = emulator.rest()
    job_id = f"every-{uuid.uuid4().hex[:8]}"
    created = rest.call("PUT", f"/jobs/v2/{job_id}", json_body={
        "jobId": job_id, "type": "scheduleUpdateTwin", "queryCondition": "*", "maxExecutionTimeInSeconds": "60",
        "updateTwin": {"tags": {"wave": job_id}, "etag": "*"}})
    assert created.status_code == 200, created.text
    for _ in range(200):
        job = rest.call("GET", f"/jobs/v2/{job_id}").json()
        if job["status"] == "completed":
            break
        threading.Event().wait(0.05)
    assert job["status"] == "completed", job
    assert job["deviceJobStatistics"]["deviceCount"] == emulator.threaded.call(lambda: len(emulator.hub.registry))
    assert emulator.threaded.get_twin(device_id)["tags"]["wave"] == job_id
    listed = rest.call("GET", "/jobs/v2/query?jobType=scheduleUpdateTwin")
    assert listed.status_code == 200 and listed.headers["x-ms-item-type"] == "jobResponse"
    assert job_id in [item["jobId"] for item in listed.json()]


def test_import_export_jobs_list_is_empty_and_an_unknown_one_is_404(emulator):
    rest = emulator.rest()
    listed = rest.call("GET", "/jobs")
    assert listed.status_code == 200 and listed.json() == []
    missing = rest.call("GET", "/jobs/export-42")
    assert_iothub_error(missing, 404)
    assert missing.headers["iothub-errorcode"] == "JobNotFound"
