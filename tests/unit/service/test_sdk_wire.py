"""The CLI through the real, unmodified SDK managers against a scripted loopback HTTPS hub.

Checks what actually goes on the wire (paths, bodies, headers) and that real responses come back
through the SDK's models into our JSON shapes. The fakes elsewhere cover every path; these cover the seam.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from service.cli import cli
from service.context import AppState

from .conftest import NOW, FakeClock
from .fakes import SERVICE_KEY, job_json, twin_json


@pytest.fixture
def sdk_run(loopback_hub):
    clock = FakeClock()

    def invoke(*args: str):
        state = AppState(clock=clock.monotonic, sleep=clock.sleep, now=lambda: NOW, tty=False)
        cs = f"HostName={loopback_hub.host};SharedAccessKeyName=iothubowner;SharedAccessKey={SERVICE_KEY}"
        return CliRunner().invoke(cli, ["--login", cs, "--ca-file", str(loopback_hub.ca_file), *args],
                                  obj=state, catch_exceptions=False)
    invoke.clock = clock
    return invoke


def test_reboot_through_the_sdk(sdk_run, loopback_hub):
    old = twin_json("d1", reported={"rebootTime": "2026-11-22T08:00:00Z"})
    new = twin_json("d1", reported={"rebootTime": "2026-11-22T09:00:05Z", "rebootState": "running"})
    loopback_hub.answer("GET", "/twins/d1", (200, old, {}), (200, old, {}), (200, new, {}))
    loopback_hub.answer("POST", "/twins/d1/methods", (200, {"status": 200, "payload": "Rebooting"}, {}))
    result = sdk_run("reboot", "d1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rebootTime"] == "2026-11-22T09:00:05Z"
    (call,) = loopback_hub.sent("POST", "/twins/d1/methods")
    assert call.body == {"methodName": "rebootDevice", "payload": "", "responseTimeoutInSeconds": 30,
                         "connectTimeoutInSeconds": 0}
    assert call.headers["Authorization"].startswith("SharedAccessSignature sr=127.0.0.1%3A")
    assert len(loopback_hub.sent("GET", "/twins/d1")) == 3


def test_query_paging_through_the_sdk_headers(sdk_run, loopback_hub):
    loopback_hub.answer("POST", "/devices/query",
                        (200, [twin_json("d1"), twin_json("d2")], {"x-ms-continuation": "tok1", "x-ms-item-type": "twin"}),
                        (200, [{"deviceId": "d3", "n": 1}], {"x-ms-item-type": "raw"}))
    result = sdk_run("query", "SELECT * FROM devices", "--page-size", "2", "--json")
    assert result.exit_code == 0, result.output
    assert [item["deviceId"] for item in json.loads(result.stdout)] == ["d1", "d2", "d3"]
    assert json.loads(result.stdout)[2] == {"deviceId": "d3", "n": 1}
    first, second = loopback_hub.sent("POST", "/devices/query")
    assert first.body == {"query": "SELECT * FROM devices"} and first.headers["x-ms-max-item-count"] == "2"
    assert "x-ms-continuation" not in first.headers and second.headers["x-ms-continuation"] == "tok1"


def test_schedule_twin_update_job_through_the_sdk(sdk_run, loopback_hub):
    loopback_hub.answer("PUT", "/jobs/v2/j1", (200, job_json("j1", "queued"), {}))
    result = sdk_run("job", "schedule-twin-update", "--desired", '{"locked": true}', "--device", "d1",
                     "--job-id", "j1", "--start-time", "+10m")
    assert result.exit_code == 0, result.output
    (call,) = loopback_hub.sent("PUT", "/jobs/v2/j1")
    assert call.body == {"jobId": "j1", "type": "scheduleUpdateTwin",
                         "updateTwin": {"properties": {"desired": {"locked": True}}, "etag": "*"},
                         "queryCondition": "deviceId IN ['d1']", "startTime": "2026-11-22T09:10:00.000Z",
                         "maxExecutionTimeInSeconds": 3600}


def test_job_wait_and_list_through_the_sdk(sdk_run, loopback_hub):
    loopback_hub.answer("GET", "/jobs/v2/j1", (200, job_json("j1", "queued", (1, 0, 0, 0, 1)), {}),
                        (200, job_json("j1", "failed", (1, 0, 1, 0, 0), failureReason="boom"), {}))
    result = sdk_run("job", "wait", "j1")
    assert result.exit_code == 15 and result.stderr.strip().endswith("Error: job j1 failed: boom")
    loopback_hub.answer("GET", "/jobs/v2/query",
                        (200, {"type": "jobResponse", "items": [job_json("j1", "failed")], "continuationToken": None}, {}))
    listed = sdk_run("job", "list", "--status", "failed", "--json")
    assert [j["jobId"] for j in json.loads(listed.stdout)] == ["j1"]
    assert "jobStatus=failed" in loopback_hub.sent("GET", "/jobs/v2/query")[0].query


def test_device_offline_and_throttling_through_the_sdk(sdk_run, loopback_hub):
    loopback_hub.answer("POST", "/twins/d1/methods",
                        (429, {"Message": "ErrorCode:ThrottlingException;slow"}, {}),
                        (404, {"errorCode": 404103, "message": "Timed out waiting for device to connect."}, {}))
    result = sdk_run("method", "invoke", "d1", "lockDoor")
    assert result.exit_code == 5, result.output
    assert result.stderr.startswith("Error: device 'd1' is not online")
    assert sdk_run.clock.sleeps == [1.0]  # one throttled answer, retried after backing off
    assert len(loopback_hub.sent("POST", "/twins/d1/methods")) == 2


def test_twin_update_etag_through_the_sdk(sdk_run, loopback_hub):
    loopback_hub.answer("PATCH", "/twins/d1", (412, {"Message": "ErrorCode:PreconditionFailed;etag"}, {}))
    result = sdk_run("twin", "update", "d1", "--tags", '{"a": null}', "--etag", "AAAA")
    assert result.exit_code == 8
    (call,) = loopback_hub.sent("PATCH", "/twins/d1")
    assert call.headers["If-Match"] == '"AAAA"' and call.body == {"tags": {"a": None}}


def test_job_list_reads_iothub_bare_array_and_continuation_through_the_sdk(sdk_run, loopback_hub):
    """IoT Hub's answer: a JSON array, the next page named by x-ms-continuation (the SDK's own
    query_scheduled_jobs cannot deserialize it)."""
    loopback_hub.answer("GET", "/jobs/v2/query",
                        (200, [job_json("a", "completed")], {"x-ms-continuation": "p2", "x-ms-item-type": "jobResponse"}),
                        (200, [job_json("b", "completed")], {"x-ms-item-type": "jobResponse"}))
    result = sdk_run("job", "list", "--status", "completed", "--json")
    assert result.exit_code == 0, result.output
    assert [job["jobId"] for job in json.loads(result.stdout)] == ["a", "b"]
    first, second = loopback_hub.sent("GET", "/jobs/v2/query")
    assert "jobStatus=completed" in first.query and "api-version=" in first.query
    assert first.headers["Authorization"].startswith("SharedAccessSignature sr=")
    assert "x-ms-continuation" not in first.headers and second.headers["x-ms-continuation"] == "p2"


def test_job_list_also_reads_the_sdk_model_shape(sdk_run, loopback_hub):
    loopback_hub.answer("GET", "/jobs/v2/query", (200, {"type": "jobResponse", "items": [job_json("a", "running")],
                                                        "continuationToken": None}, {}))
    result = sdk_run("job", "list", "--json")
    assert result.exit_code == 0, result.output
    assert [job["jobId"] for job in json.loads(result.stdout)] == ["a"]


def test_job_list_error_is_one_line_through_the_sdk(sdk_run, loopback_hub):
    loopback_hub.answer("GET", "/jobs/v2/query", (401, {
        "Message": "ErrorCode:IotHubUnauthorizedAccess;Unauthorized",
        "ExceptionMessage": "Tracking ID:0145380c335046479275c10be0eb278f-G:0-TimeStamp:11/10/2016 08:37:23"},
        {"iothub-errorcode": "IotHubUnauthorizedAccess"}))
    result = sdk_run("job", "list")
    assert result.exit_code == 11
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "(Unauthorized)" in result.stderr
