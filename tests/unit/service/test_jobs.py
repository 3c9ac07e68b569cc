from __future__ import annotations

import json
import uuid

import pytest

from .fakes import http_error, job_json, twin_json


def created_request(fake_hub) -> dict:
    (job_id, request), = fake_hub.calls_to("create_scheduled_job")
    assert request["jobId"] == job_id
    return request


def test_schedule_method_for_devices_builds_the_wire_request(run, fake_hub):
    result = run("job", "schedule-method", "--method", "lockDoor", "--payload", '{"door": "all"}',
                 "--device", "d1", "--device", "d2", "--job-id", "j1", "--response-timeout", "10",
                 "--max-execution-time", "600")
    assert result.exit_code == 0, result.output
    assert created_request(fake_hub) == {
        "jobId": "j1", "type": "scheduleDeviceMethod",
        "cloudToDeviceMethod": {"methodName": "lockDoor", "payload": {"door": "all"},
                                "responseTimeoutInSeconds": 10, "connectTimeoutInSeconds": 0},
        "queryCondition": "deviceId IN ['d1','d2']",
        "startTime": "2026-11-22T09:00:00.000Z",
        "maxExecutionTimeInSeconds": 600,
    }
    assert "Job:" in result.stdout and "j1" in result.stdout and "queued" in result.stdout


def test_schedule_method_with_query_condition_and_default_job_id(run, fake_hub):
    data = run.json("job", "schedule-method", "--method", "m", "--query-condition", "WHERE tags.site = 'paris'")
    request = created_request(fake_hub)
    assert request["queryCondition"] == "tags.site = 'paris'"  # the clause only
    assert uuid.UUID(request["jobId"]).version == 4
    assert data["jobId"] == request["jobId"] and data["status"] == "queued"


@pytest.mark.parametrize("start,expected", [
    ("now", "2026-11-22T09:00:00.000Z"),
    ("+30s", "2026-11-22T09:00:30.000Z"),
    ("+10m", "2026-11-22T09:10:00.000Z"),
    ("+1h", "2026-11-22T10:00:00.000Z"),
    ("2026-12-01T08:30:00", "2026-12-01T08:30:00.000Z"),
    ("2026-12-01T10:30:00+02:00", "2026-12-01T08:30:00.000Z"),
    ("2026-12-01T08:30:00Z", "2026-12-01T08:30:00.000Z"),
])
def test_start_time_forms(run, fake_hub, start, expected):
    assert run("job", "schedule-method", "--method", "m", "--device", "d1", "--start-time", start).exit_code == 0
    assert created_request(fake_hub)["startTime"] == expected


@pytest.mark.parametrize("args,message", [
    (("--method", "m"), "Error: give the devices to target"),
    (("--method", "m", "--device", "d1", "--query-condition", "x = 1"), "Error: give --device or --query-condition, not both"),
    (("--method", "m", "--device", "d1", "--start-time", "tomorrow"), "Error: --start-time 'tomorrow' is not ISO 8601"),
    (("--method", "m", "--device", "d1", "--payload", "{x"), "Error: --payload is not valid JSON"),
    (("--method", "m", "--device", "it's"), "Error: device id 'it's' contains a single quote"),
])
def test_schedule_method_bad_input_fails_before_network(run, fake_hub, args, message):
    result = run("job", "schedule-method", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert fake_hub.calls == []


def test_schedule_twin_update_builds_the_wire_request(run, fake_hub):
    result = run("job", "schedule-twin-update", "--desired", '{"locked": true, "old": null}',
                 "--tags", '{"site": "paris"}', "--device", "d1", "--job-id", "t1", "--start-time", "+10m")
    assert result.exit_code == 0, result.output
    assert created_request(fake_hub) == {
        "jobId": "t1", "type": "scheduleUpdateTwin",
        "updateTwin": {"tags": {"site": "paris"}, "properties": {"desired": {"locked": True, "old": None}},
                       "etag": "*"},
        "queryCondition": "deviceId IN ['d1']",
        "startTime": "2026-11-22T09:10:00.000Z",
        "maxExecutionTimeInSeconds": 3600,
    }


def test_schedule_twin_update_tags_only(run, fake_hub):
    assert run("job", "schedule-twin-update", "--tags", '{"a": 1}', "--query-condition", "x = 1").exit_code == 0
    assert created_request(fake_hub)["updateTwin"] == {"tags": {"a": 1}, "etag": "*"}


@pytest.mark.parametrize("args,message", [
    (("--device", "d1"), "Error: give --desired and/or --tags"),
    (("--device", "d1", "--desired", "[]"), "Error: --desired must be a JSON object"),
])
def test_schedule_twin_update_bad_input(run, fake_hub, args, message):
    result = run("job", "schedule-twin-update", *args)
    assert result.exit_code == 2 and result.stderr.startswith(message) and fake_hub.calls == []


def progress(fake_hub, job_id, final_status, **final_extra):
    fake_hub.set_job_states(job_id,
                            job_json(job_id, "queued", (3, 0, 0, 0, 3)),
                            job_json(job_id, "running", (3, 1, 0, 1, 1)),
                            job_json(job_id, "running", (3, 2, 0, 1, 0)),
                            job_json(job_id, final_status, (3, 2, 1, 0, 0), **final_extra))


def test_job_wait_queued_running_completed(run, fake_hub, clock):
    progress(fake_hub, "j1", "completed")
    result = run("job", "wait", "j1")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "job j1: queued 0 succeeded, 0 failed, 0 running, 3 pending of 3",
        "job j1: running 1 succeeded, 0 failed, 1 running, 1 pending of 3",
        "job j1: running 2 succeeded, 0 failed, 1 running, 0 pending of 3",
        "job j1: completed 2 succeeded, 1 failed, 0 running, 0 pending of 3",
        # the job "completed" although a device failed: say where to see why
        "1 device failed: `iothub-service job show j1 --devices` shows why",
    ]
    assert "completed" in result.stdout
    assert clock.sleeps == [0.25, 0.5, 1.0]


def test_job_wait_with_no_failed_devices_adds_no_hint(run, fake_hub):
    fake_hub.set_job_states("j1", job_json("j1", "completed", (3, 3, 0, 0, 0)))
    result = run("job", "wait", "j1")
    assert result.exit_code == 0, result.output
    assert "failed:" not in result.stderr


def test_ctrl_c_while_waiting_for_a_job_says_it_keeps_running(run, fake_hub):
    fake_hub.set_job_states("j1", job_json("j1", "scheduled", (0, 0, 0, 0, 0)))
    fake_hub.fail("get_scheduled_job", KeyboardInterrupt())
    result = run("job", "schedule-method", "--method", "m", "--device", "d1", "--job-id", "j1", "--wait")
    assert result.exit_code == 130  # was click's "Aborted!" with exit 1 (documented as a hub error)
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: interrupted: job j1 keeps running on the hub; follow it with `iothub-service job wait j1` "
        "or stop it with `iothub-service job cancel j1`")


def test_ctrl_c_in_any_command_exits_130_with_one_line(run, fake_hub):
    fake_hub.set_twins("d1", twin_json("d1"))
    fake_hub.fail("get_twin", KeyboardInterrupt())
    result = run("twin", "wait", "d1", "--reported", "rebootState")
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == "Error: interrupted"


def test_job_wait_failed_exits_15(run, fake_hub):
    progress(fake_hub, "j1", "failed", failureReason="Max execution time exceeded")
    result = run("job", "wait", "j1", "--json")
    assert result.exit_code == 15
    assert json.loads(result.stdout)["status"] == "failed"
    assert result.stderr.strip() == "Error: job j1 failed: Max execution time exceeded"


def test_job_wait_cancelled_exits_15(run, fake_hub):
    progress(fake_hub, "j1", "cancelled")
    result = run("job", "wait", "j1")
    assert result.exit_code == 15
    assert result.stderr.strip().splitlines()[-1] == "Error: job j1 was cancelled"


def test_job_wait_timeout_exits_14(run, fake_hub, clock):
    fake_hub.set_job_states("j1", job_json("j1", "running", (3, 1, 0, 2, 0)))
    result = run("job", "wait", "j1", "--timeout", "20", "--poll-interval", "5")
    assert result.exit_code == 14
    assert result.stderr.strip().splitlines()[-1].startswith("Error: job j1 is still running after 20 s")
    assert sum(clock.sleeps) == pytest.approx(20)


def test_schedule_with_wait_follows_the_job(run, fake_hub):
    progress(fake_hub, "j1", "completed")
    data = run.json("job", "schedule-method", "--method", "m", "--device", "d1", "--job-id", "j1", "--wait")
    assert data["status"] == "completed"
    assert data["deviceJobStatistics"]["deviceCount"] == 3
    assert len(fake_hub.calls_to("get_scheduled_job")) == 4


def test_schedule_with_wait_failing_job(run, fake_hub):
    progress(fake_hub, "j1", "failed")
    result = run("job", "schedule-twin-update", "--tags", "{}", "--device", "d1", "--job-id", "j1", "--wait")
    assert result.exit_code == 15
    assert "Scheduled job j1" in result.stdout


def test_job_show(run, fake_hub):
    fake_hub.set_job_states("j1", job_json("j1", "running", (2, 1, 0, 1, 0)))
    result = run("job", "show", "j1")
    assert result.exit_code == 0
    assert "lockDoor" in result.stdout and "1 succeeded, 0 failed, 1 running, 0 pending of 2" in result.stdout
    assert fake_hub.calls_to("query_iot_hub") == []
    data = run.json("job", "show", "j1")
    assert data["jobId"] == "j1" and "devices" not in data


DEVICE_JOBS = [
    {"deviceId": "d1", "jobId": "j1", "jobType": "scheduleDeviceMethod", "status": "completed",
     "endTimeUtc": "2026-11-22T09:00:05Z",
     "outcome": {"deviceMethodResponse": {"status": 200, "payload": {"locked": True}}}},
    {"deviceId": "d2", "jobId": "j1", "jobType": "scheduleDeviceMethod", "status": "failed",
     "error": {"code": "JobRunPreconditionFailed", "description": "device offline"}},
]


def test_job_show_devices(run, fake_hub):
    fake_hub.set_job_states("j1", job_json("j1", "completed", (2, 1, 1, 0, 0)))
    fake_hub.query_pages = [(DEVICE_JOBS, None)]
    data = run.json("job", "show", "j1", "--devices")
    assert fake_hub.calls_to("query_iot_hub")[0][0] == "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j1'"
    assert data["jobId"] == "j1"
    assert [d["deviceId"] for d in data["devices"]] == ["d1", "d2"]
    assert data["devices"][0]["outcome"]["deviceMethodResponse"]["status"] == 200
    assert data["devices"][1]["error"]["description"] == "device offline"
    human = run("job", "show", "j1", "--devices").stdout
    assert "method status 200" in human and "JobRunPreconditionFailed: device offline" in human


def test_job_not_found(run, fake_hub):
    result = run("job", "show", "nope")
    assert result.exit_code == 4
    assert result.stderr.startswith("Error: job 'nope' not found on hub testhub.azure-devices.net")


def test_job_list_with_filters(run, fake_hub):
    fake_hub.job_list = [job_json("a", "completed", (1, 1, 0, 0, 0)),
                         {**job_json("b", "running"), "type": "scheduleUpdateTwin"}]
    assert [j["jobId"] for j in run.json("job", "list")] == ["a", "b"]
    assert [j["jobId"] for j in run.json("job", "list", "--type", "scheduleUpdateTwin")] == ["b"]
    assert [j["jobId"] for j in run.json("job", "list", "--status", "completed")] == ["a"]
    assert fake_hub.calls_to("query_scheduled_jobs")[-1] == (None, "completed")
    table = run("job", "list").stdout
    assert "a" in table and "scheduleUpdateTwin" in table and "1 succeeded" in table
    assert run("job", "list", "--type", "bogus").exit_code == 2


def test_job_list_follows_continuation_pages(run, fake_hub):
    """IoT Hub pages GET /jobs/v2/query (x-ms-continuation), as it does /devices/query."""
    fake_hub.job_list = [job_json(f"j{n:03}", "completed") for n in range(250)]
    assert [j["jobId"] for j in run.json("job", "list")] == [f"j{n:03}" for n in range(250)]
    assert len(fake_hub.calls_to("query_scheduled_jobs")) == 3


def test_job_list_empty(run, fake_hub):
    assert run("job", "list").stdout.strip() == "No jobs."


def test_job_cancel(run, fake_hub):
    fake_hub.set_job_states("j1", job_json("j1", "scheduled"))
    result = run("job", "cancel", "j1")
    assert result.exit_code == 0 and result.stdout.strip() == "Cancelled job j1 (status: cancelled)"
    assert run.json("job", "cancel", "j1")["status"] == "cancelled"


def test_job_create_conflict(run, fake_hub):
    fake_hub.fail("create_scheduled_job", http_error(409, {"Message": "ErrorCode:JobAlreadyExists;j1"}))
    result = run("job", "schedule-method", "--method", "m", "--device", "d1", "--job-id", "j1")
    assert result.exit_code == 9 and result.stderr.startswith("Error: job 'j1' already exists")


def test_on_a_terminal_job_wait_shows_a_progress_bar(run, fake_hub):
    progress(fake_hub, "j1", "completed")
    result = run("job", "wait", "j1", tty=True)
    assert result.exit_code == 0, result.output
    assert "job j1 completed" in result.stderr  # the bar's final description
    assert "2 succeeded, 1 failed, 0 running, 0 pending of 3" in result.stderr
    assert "job j1:" not in result.stderr  # no plain progress lines on a terminal


def test_start_time_without_offset_is_utc_whatever_the_local_zone(run, fake_hub):
    import os
    import time
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        assert run("job", "schedule-method", "--method", "m", "--device", "d1",
                   "--start-time", "2026-12-01T08:30:00").exit_code == 0
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()
    assert created_request(fake_hub)["startTime"] == "2026-12-01T08:30:00.000Z"
