"""Story 2, "Schedule and broadcast jobs": a scheduled lockDoor method job and a twin-update job
({"building": 43, "floor": 3}) over the devices a twin query selects, with per-device results."""

from __future__ import annotations

import json

import pytest

from tests.e2e.stories_support import (desired, devices, reported, story_hub, suffix,  # noqa: F401
                                       wait_for_twin)

pytestmark = pytest.mark.e2e

BUILDING = {"building": 43, "floor": 3}


def _ack(value, expected) -> bool:
    return isinstance(value, dict) and value.get("value") == expected and value.get("ac") == 200


def test_method_and_twin_update_jobs_reach_exactly_the_devices_a_query_selects(story_hub, devices):
    run = suffix()
    ids, _ = devices.fleet(f"jobs-{run}-", 3, "--no-telemetry")
    chosen, other = ids[:2], ids[2]
    site = f"lab-{run}"
    for device_id in chosen:
        tagged = story_hub.service("twin", "update", device_id, "--tags", json.dumps({"site": site}))
        assert tagged.returncode == 0, tagged.stderr
    condition = f"tags.site = '{site}'"
    selected = story_hub.service_json("query", f"SELECT deviceId FROM devices WHERE {condition}")
    assert sorted(item["deviceId"] for item in selected) == chosen

    lock_job = f"lock-{run}"
    locked = story_hub.service("job", "schedule-method", "--method", "lockDoor", "--payload", '{"lockTime": "10m"}',
                               "--query-condition", condition, "--start-time", "+2s", "--job-id", lock_job,
                               "--wait", "--timeout", "90", "--poll-interval", "0.3")
    assert locked.returncode == 0, locked.stderr
    assert "Status:          completed" in locked.stdout
    assert "2 succeeded, 0 failed, 0 running, 0 pending of 2" in locked.stdout
    job = story_hub.service_json("job", "show", lock_job, "--devices")
    assert job["type"] == "scheduleDeviceMethod" and job["status"] == "completed"
    assert job["startTime"] > job["createdTime"]  # it was scheduled, not run at once
    outcomes = {item["deviceId"]: item for item in job["devices"]}
    assert sorted(outcomes) == chosen
    for item in outcomes.values():
        assert item["status"] == "completed"
        assert item["outcome"]["deviceMethodResponse"] == {
            "status": 200, "payload": {"Response": "lockDoor called successfully"}}
    for device_id in chosen:
        assert reported(story_hub.service_json("twin", "show", device_id), "door.locked") is True
    assert reported(story_hub.service_json("twin", "show", other), "door") is None

    twin_job = f"building-{run}"
    updated = story_hub.service("job", "schedule-twin-update", "--desired", json.dumps(BUILDING),
                                "--query-condition", condition, "--job-id", twin_job, "--wait",
                                "--timeout", "90", "--poll-interval", "0.3")
    assert updated.returncode == 0, updated.stderr
    job = story_hub.service_json("job", "show", twin_job, "--devices")
    assert job["type"] == "scheduleUpdateTwin" and job["status"] == "completed"
    assert job["deviceJobStatistics"]["succeededCount"] == 2 and job["deviceJobStatistics"]["failedCount"] == 0
    assert sorted(item["deviceId"] for item in job["devices"]) == chosen
    for device_id in chosen:
        twin = wait_for_twin(story_hub, device_id,
                             lambda t: _ack(reported(t, "building"), 43) and _ack(reported(t, "floor"), 3),
                             f"{device_id} acknowledging building and floor")
        assert desired(twin, "building") == 43 and desired(twin, "floor") == 3
        assert reported(twin, "floor.av") == twin["properties"]["desired"]["$version"]
    untouched = story_hub.service_json("twin", "show", other)
    assert desired(untouched, "building") is None and reported(untouched, "building") is None


def test_a_method_job_reports_an_offline_device_as_failed(story_hub, devices):
    run = suffix()
    ids, _ = devices.fleet(f"joboff-{run}-", 1, "--no-telemetry")
    offline = f"joboff-{run}-offline"
    assert story_hub.service("device", "create", offline).returncode == 0
    try:
        job_id = f"offline-{run}"
        result = story_hub.service("job", "schedule-method", "--method", "lockDoor", "--device", ids[0],
                                   "--device", offline, "--job-id", job_id, "--wait", "--timeout", "90",
                                   "--poll-interval", "0.3")
        assert "1 succeeded, 1 failed" in result.stdout, result.stdout + result.stderr
        job = story_hub.service_json("job", "show", job_id, "--devices")
        outcomes = {item["deviceId"]: item for item in job["devices"]}
        assert outcomes[ids[0]]["status"] == "completed"
        assert outcomes[offline]["status"] == "failed"
        assert "DeviceNotOnline" in json.dumps(outcomes[offline])
    finally:
        story_hub.service("device", "delete", offline)
