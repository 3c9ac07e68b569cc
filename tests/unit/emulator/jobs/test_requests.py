"""Invalid JobRequests are refused with IoT Hub's status and error codes; lookups of unknown jobs 404."""

from __future__ import annotations

import time

import pytest

from emulator.hub.errors import HubError
from emulator.hub.jobs import JobScheduler
from emulator.hub.jobs_errors import JobAlreadyExists, JobArgumentInvalid, JobArgumentNull, JobNotFound
from emulator.rest.errors import error_body

from .fakes import FakeClock, FakeTarget, twin


def valid() -> dict:
    return {"jobId": "job-1", "type": "scheduleDeviceMethod", "queryCondition": "deviceId = 'a'",
            "cloudToDeviceMethod": {"methodName": "reboot"}, "maxExecutionTimeInSeconds": 60}


def changed(**fields) -> dict:
    body = valid()
    for key, value in fields.items():
        if value is _DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return body


_DROP = object()


@pytest.fixture
def scheduler() -> JobScheduler:
    return JobScheduler(FakeTarget([twin("a")]), FakeClock())


@pytest.mark.parametrize(
    ("body", "error", "words"),
    [
        ("not an object", JobArgumentInvalid, "JSON object"),
        (changed(jobId=_DROP), JobArgumentNull, "jobId is required"),
        (changed(jobId="has space"), JobArgumentInvalid, "jobId 'has space' is invalid"),
        (changed(jobId="x" * 129), JobArgumentInvalid, "is invalid"),
        (changed(type=_DROP), JobArgumentNull, "type is required"),
        (changed(type="export"), JobArgumentInvalid, "type 'export' is not supported"),
        (changed(queryCondition=_DROP), JobArgumentNull, "queryCondition is required"),
        (changed(queryCondition="  "), JobArgumentNull, "queryCondition is required"),
        (changed(queryCondition=42), JobArgumentInvalid, "queryCondition must be a string"),
        (changed(queryCondition="deviceId = "), JobArgumentInvalid, "(line 1, column 12)"),
        (changed(queryCondition="SELECT * FROM devices"), JobArgumentInvalid, "queryCondition is invalid"),
        (changed(startTime="tomorrow"), JobArgumentInvalid, "startTime 'tomorrow'"),
        (changed(startTime=12), JobArgumentInvalid, "startTime must be"),
        (changed(maxExecutionTimeInSeconds=0), JobArgumentInvalid, "maxExecutionTimeInSeconds"),
        (changed(maxExecutionTimeInSeconds="sixty"), JobArgumentInvalid, "maxExecutionTimeInSeconds"),
        (changed(cloudToDeviceMethod=_DROP), JobArgumentNull, "cloudToDeviceMethod is required"),
        (changed(cloudToDeviceMethod={"payload": 1}), JobArgumentNull, "methodName is required"),
        (changed(cloudToDeviceMethod={"methodName": "m", "responseTimeoutInSeconds": 4}),
         JobArgumentInvalid, "responseTimeoutInSeconds must be a whole number from 5 to 300"),
        (changed(cloudToDeviceMethod={"methodName": "m", "responseTimeoutInSeconds": 301}),
         JobArgumentInvalid, "from 5 to 300"),
        (changed(cloudToDeviceMethod={"methodName": "m", "connectTimeoutInSeconds": -1}),
         JobArgumentInvalid, "connectTimeoutInSeconds must be a whole number from 0 to 300"),
        (changed(cloudToDeviceMethod={"methodName": "m", "payload": "x" * (128 * 1024)}),
         JobArgumentInvalid, "larger than 131072 bytes"),
        (changed(type="scheduleUpdateTwin"), JobArgumentNull, "updateTwin is required"),
        (changed(type="scheduleUpdateTwin", updateTwin={"properties": {"reported": {"a": 1}}}),
         JobArgumentInvalid, "cannot change reported"),
        (changed(type="scheduleUpdateTwin", updateTwin={"etag": "*"}),
         JobArgumentInvalid, "must change tags or properties.desired"),
        (changed(type="scheduleUpdateTwin", updateTwin={"tags": "x"}), JobArgumentInvalid, "tags must be"),
        (changed(type="scheduleUpdateTwin", updateTwin={"properties": {"desired": {"a.b": 1}}}),
         JobArgumentInvalid, "Property name 'a.b' in updateTwin.properties.desired is invalid"),
        (changed(type="scheduleUpdateTwin", updateTwin={"properties": {"desired": {"ok": {"$x": 1}}}}),
         JobArgumentInvalid, "Property name '$x'"),
        (changed(type="scheduleUpdateTwin", updateTwin={"tags": {"has space": 1}}),
         JobArgumentInvalid, "Property name 'has space' in updateTwin.tags is invalid"),
    ],
)
def test_invalid_requests_are_400(scheduler: JobScheduler, body, error, words: str) -> None:
    with pytest.raises(error) as caught:
        scheduler.create(body)
    assert caught.value.http_status == 400
    assert words in caught.value.message
    assert isinstance(caught.value, HubError)  # one hierarchy: the REST front answers it like any hub error
    assert error_body(caught.value)["Message"].startswith(f"ErrorCode:{caught.value.error_name};")
    assert scheduler.query() == []


def test_valid_twin_update_keeps_echoed_version_and_etag(scheduler: JobScheduler) -> None:
    update = {"etag": "*", "tags": {"site": "paris"}, "properties": {"desired": {"a": 1, "$version": 3}}}
    job = scheduler.create(changed(type="scheduleUpdateTwin", cloudToDeviceMethod=_DROP, updateTwin=update))
    assert job["updateTwin"] == update


def test_error_codes() -> None:
    assert (JobArgumentInvalid.error_code, JobArgumentNull.error_code) == (400004, 400005)
    assert (JobNotFound("x").http_status, JobAlreadyExists("x").http_status) == (404, 409)


def test_url_id_must_agree_with_body(scheduler: JobScheduler) -> None:
    with pytest.raises(JobArgumentInvalid, match="does not match"):
        scheduler.create(valid(), job_id="other")
    assert scheduler.create(changed(jobId=_DROP), job_id="from-url")["jobId"] == "from-url"
    assert scheduler.create(valid(), job_id="job-1")["jobId"] == "job-1"


def test_duplicate_job_id_is_409(scheduler: JobScheduler) -> None:
    scheduler.create(valid())
    with pytest.raises(JobAlreadyExists) as caught:
        scheduler.create(valid())
    assert caught.value.http_status == 409


def test_defaults_are_filled_in(scheduler: JobScheduler) -> None:
    job = scheduler.create(changed(maxExecutionTimeInSeconds=_DROP))
    assert job["maxExecutionTimeInSeconds"] == 3600
    assert job["cloudToDeviceMethod"] == {"methodName": "reboot", "payload": None,
                                          "responseTimeoutInSeconds": 30, "connectTimeoutInSeconds": 0}
    assert job["startTime"] == job["createdTime"]
    assert job["status"] == "queued"
    assert job["deviceJobStatistics"] == {"deviceCount": 0, "failedCount": 0, "succeededCount": 0,
                                          "runningCount": 0, "pendingCount": 0}


def test_unknown_job_is_404(scheduler: JobScheduler) -> None:
    with pytest.raises(JobNotFound) as caught:
        scheduler.get("nope")
    assert caught.value.error_code == 404002
    with pytest.raises(JobNotFound):
        scheduler.cancel("nope")


def test_a_naive_start_time_is_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        clock = FakeClock()  # 2023-11-14T22:13:20Z
        scheduler = JobScheduler(FakeTarget([twin("a")]), clock)
        job = scheduler.create(changed(startTime="2023-11-14T22:15:00"))
        assert job["status"] == "scheduled"
        assert job["startTime"] == "2023-11-14T22:15:00.000000Z"
    finally:
        monkeypatch.undo()
        time.tzset()
