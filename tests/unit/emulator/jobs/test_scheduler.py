"""JobScheduler with a fake target and a fake clock: lifecycle, statistics, per-device records."""

from __future__ import annotations

import asyncio
import json

import pytest
from azure.iot.hub.protocol import models as sdk_models
from msrest.serialization import Deserializer

from emulator.hub.jobs import JobScheduler
from emulator.hub.jobs_request import format_utc
from emulator.hub.query import execute, parse_query

from .fakes import FakeClock, FakeHubError, FakeTarget, settle, twin

FLEET = [twin("lock-1", kind="lock"), twin("lock-2", kind="lock"), twin("lock-3", kind="lock"),
         twin("thermo-1", kind="thermostat")]


def method_job(job_id: str = "lockdoor", condition: str = "tags.kind = 'lock'", **extra) -> dict:
    return {"jobId": job_id, "type": "scheduleDeviceMethod", "queryCondition": condition,
            "cloudToDeviceMethod": {"methodName": "lockDoor", "payload": {"force": True},
                                    "responseTimeoutInSeconds": 10},
            "maxExecutionTimeInSeconds": 60, **extra}


def twin_job(job_id: str = "settemp", condition: str = "deviceId IN ['thermo-1', 'lock-1']", **extra) -> dict:
    return {"jobId": job_id, "type": "scheduleUpdateTwin", "queryCondition": condition,
            "updateTwin": {"etag": "*", "tags": {"building": "43"},
                           "properties": {"desired": {"targetTemperature": 21}}},
            "maxExecutionTimeInSeconds": 60, **extra}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def run_to_end(scheduler: JobScheduler) -> None:
    await scheduler.tick()
    await scheduler.wait_idle()


async def test_method_job_over_several_devices_with_one_offline(clock: FakeClock) -> None:
    target = FakeTarget(FLEET, offline=("lock-2",))
    scheduler = JobScheduler(target, clock)

    created = scheduler.create(method_job())
    assert created["status"] == "queued"
    assert created["cloudToDeviceMethod"] == {"methodName": "lockDoor", "payload": {"force": True},
                                              "responseTimeoutInSeconds": 10, "connectTimeoutInSeconds": 0}
    clock.advance(1)
    await run_to_end(scheduler)

    job = scheduler.get("lockdoor")
    assert job["status"] == "completed"
    assert job["endTime"] == format_utc(clock.now)
    assert job["deviceJobStatistics"] == {"deviceCount": 3, "failedCount": 1, "succeededCount": 2,
                                          "runningCount": 0, "pendingCount": 0}
    assert sorted(c[0] for c in target.calls) == ["lock-1", "lock-2", "lock-3"]
    assert target.calls[0][1:] == ("lockDoor", {"force": True}, 10, 0)

    rows = {r["deviceId"]: r for r in scheduler.device_job_documents()}
    assert set(rows) == {"lock-1", "lock-2", "lock-3"}
    assert rows["lock-1"]["status"] == "completed"
    assert rows["lock-1"]["outcome"] == {"deviceMethodResponse": {
        "status": 200, "payload": {"device": "lock-1", "received": {"force": True}}}}
    assert rows["lock-2"]["status"] == "failed"
    assert rows["lock-2"]["error"] == {"code": "DeviceNotOnline", "description": "Device lock-2 is not online"}
    assert "outcome" not in rows["lock-2"]
    assert rows["lock-1"]["jobType"] == "scheduleDeviceMethod"

    # the per-device records are what FROM devices.jobs queries
    failed = execute(parse_query("SELECT devices.jobs.deviceId FROM devices.jobs "
                                 "WHERE devices.jobs.jobId = 'lockdoor' AND status = 'failed'"),
                     scheduler.device_job_documents())
    assert failed == [{"deviceId": "lock-2"}]


async def test_twin_update_job_patches_only_the_selected_twins(clock: FakeClock) -> None:
    target = FakeTarget(FLEET)
    target.twin_failures["lock-1"] = FakeHubError("DeviceNotFound", 404001, "Device lock-1 not found")
    scheduler = JobScheduler(target, clock)
    scheduler.create(twin_job())
    await run_to_end(scheduler)

    assert target.patches == [("thermo-1", {"tags": {"building": "43"},
                                            "properties": {"desired": {"targetTemperature": 21}}})]
    job = scheduler.get("settemp")
    assert job["status"] == "completed"
    assert job["updateTwin"]["properties"]["desired"] == {"targetTemperature": 21}
    assert job["deviceJobStatistics"]["succeededCount"] == 1
    assert job["deviceJobStatistics"]["failedCount"] == 1
    rows = {r["deviceId"]: r for r in scheduler.device_job_documents()}
    assert rows["thermo-1"]["outcome"] == {"deviceMethodResponse": None}
    assert rows["lock-1"]["error"]["code"] == "DeviceNotFound"


async def test_future_start_waits_for_its_time(clock: FakeClock) -> None:
    target = FakeTarget(FLEET)
    scheduler = JobScheduler(target, clock)
    # naive start time is UTC: 100 s after the fake clock's 2023-11-14T22:13:20Z
    created = scheduler.create(method_job(startTime="2023-11-14T22:15:00"))
    assert created["status"] == "scheduled"
    assert created["startTime"] == "2023-11-14T22:15:00.000000Z"

    clock.advance(99)
    await run_to_end(scheduler)
    assert scheduler.get("lockdoor")["status"] == "scheduled"
    assert target.calls == []
    assert scheduler.device_job_documents() == []

    clock.advance(1)
    await run_to_end(scheduler)
    assert scheduler.get("lockdoor")["status"] == "completed"
    assert len(target.calls) == 3


async def test_start_time_with_an_offset_in_the_past_runs_now(clock: FakeClock) -> None:
    scheduler = JobScheduler(FakeTarget(FLEET), clock)
    # 23:15 at +02:00 is 21:15Z, an hour before the clock
    assert scheduler.create(method_job(startTime="2023-11-14T23:15:00+02:00"))["status"] == "queued"


async def test_devices_are_chosen_when_the_job_starts(clock: FakeClock) -> None:
    target = FakeTarget(list(FLEET))
    scheduler = JobScheduler(target, clock)
    scheduler.create(method_job(startTime="2023-11-14T22:15:00Z"))
    target.twins.append(twin("lock-4", kind="lock"))  # registered after the job was created
    clock.advance(100)
    await run_to_end(scheduler)
    assert scheduler.get("lockdoor")["deviceJobStatistics"]["deviceCount"] == 4


async def test_a_job_matching_no_device_completes_empty(clock: FakeClock) -> None:
    scheduler = JobScheduler(FakeTarget(FLEET), clock)
    scheduler.create(method_job(condition="tags.kind = 'fridge'"))
    await run_to_end(scheduler)
    job = scheduler.get("lockdoor")
    assert job["status"] == "completed"
    assert job["deviceJobStatistics"]["deviceCount"] == 0


async def test_cancel_before_start(clock: FakeClock) -> None:
    target = FakeTarget(FLEET)
    scheduler = JobScheduler(target, clock)
    scheduler.create(method_job(startTime="2023-11-14T22:15:00Z"))
    cancelled = scheduler.cancel("lockdoor")
    assert cancelled["status"] == "cancelled"
    assert cancelled["endTime"] == format_utc(clock.now)
    clock.advance(1000)
    await run_to_end(scheduler)
    assert scheduler.get("lockdoor")["status"] == "cancelled"
    assert target.calls == []


async def test_cancel_during_run_stops_unfinished_devices(clock: FakeClock) -> None:
    target = FakeTarget(FLEET, offline=("lock-1",))
    target.gate.clear()
    scheduler = JobScheduler(target, clock)
    scheduler.create(method_job())
    await scheduler.tick()
    await settle()
    assert scheduler.get("lockdoor")["deviceJobStatistics"] == {
        "deviceCount": 3, "failedCount": 1, "succeededCount": 0, "runningCount": 2, "pendingCount": 0}

    clock.advance(5)
    job = scheduler.cancel("lockdoor")
    assert job["status"] == "cancelled"
    assert job["deviceJobStatistics"] == {"deviceCount": 3, "failedCount": 1, "succeededCount": 0,
                                          "runningCount": 0, "pendingCount": 0}
    target.gate.set()  # answers arriving now must not change anything
    await asyncio.wait_for(scheduler.wait_idle(), timeout=60)
    assert target.cancelled_calls == 2
    statuses = {r["deviceId"]: r["status"] for r in scheduler.device_job_documents()}
    assert statuses == {"lock-1": "failed", "lock-2": "cancelled", "lock-3": "cancelled"}
    assert scheduler.get("lockdoor")["status"] == "cancelled"
    assert scheduler.cancel("lockdoor")["status"] == "cancelled"  # again: unchanged


async def test_max_execution_time_exceeded_fails_the_job(clock: FakeClock) -> None:
    target = FakeTarget(FLEET)
    target.gate.clear()  # devices never answer
    scheduler = JobScheduler(target, clock)
    scheduler.create(method_job(maxExecutionTimeInSeconds=30))
    await scheduler.tick()
    await settle()

    clock.advance(29.9)
    await scheduler.tick()
    assert scheduler.get("lockdoor")["status"] == "running"

    clock.advance(0.1)
    await scheduler.tick()
    await asyncio.wait_for(scheduler.wait_idle(), timeout=60)
    job = scheduler.get("lockdoor")
    assert job["status"] == "failed"
    assert "maxExecutionTimeInSeconds (30 s)" in job["failureReason"]
    assert job["deviceJobStatistics"]["failedCount"] == 3
    assert {r["error"]["code"] for r in scheduler.device_job_documents()} == {"JobExecutionTimeExceeded"}
    assert target.cancelled_calls == 3


async def test_concurrency_bound_is_respected(clock: FakeClock) -> None:
    fleet = [twin(f"lock-{i}", kind="lock") for i in range(10)]
    target = FakeTarget(fleet)
    target.gate.clear()
    scheduler = JobScheduler(target, clock, max_concurrent_methods=3)
    scheduler.create(method_job())
    await scheduler.tick()
    await settle()
    assert target.in_flight == 3
    assert scheduler.get("lockdoor")["deviceJobStatistics"]["runningCount"] == 3
    assert scheduler.get("lockdoor")["deviceJobStatistics"]["pendingCount"] == 7

    target.gate.set()
    await asyncio.wait_for(scheduler.wait_idle(), timeout=60)
    assert target.most_in_flight == 3
    assert scheduler.get("lockdoor")["deviceJobStatistics"]["succeededCount"] == 10


async def test_statistics_always_add_up(clock: FakeClock) -> None:
    seen: list[dict] = []
    scheduler = JobScheduler(FakeTarget(FLEET, offline=("lock-3",)), clock,
                             persist=lambda snap: seen.append(snap["job"]["deviceJobStatistics"]))
    scheduler.create(method_job())
    await run_to_end(scheduler)
    assert len(seen) >= 6  # created, started, and each device running then done
    for stats in seen:
        total = sum(stats[k] for k in ("failedCount", "succeededCount", "runningCount", "pendingCount"))
        assert total == stats["deviceCount"]


async def test_query_by_type_and_status(clock: FakeClock) -> None:
    scheduler = JobScheduler(FakeTarget(FLEET), clock)
    scheduler.create(method_job("m1"))
    scheduler.create(twin_job("t1"))
    scheduler.create(method_job("m2", startTime="2030-01-01T00:00:00Z"))
    await run_to_end(scheduler)
    assert [j["jobId"] for j in scheduler.query()] == ["m1", "t1", "m2"]
    assert [j["jobId"] for j in scheduler.query(job_type="scheduleDeviceMethod")] == ["m1", "m2"]
    assert [j["jobId"] for j in scheduler.query(job_status="completed")] == ["m1", "t1"]
    assert [j["jobId"] for j in scheduler.query("scheduleDeviceMethod", "scheduled")] == ["m2"]
    assert scheduler.query("scheduleUpdateTwin", "scheduled") == []


async def test_job_json_deserialises_with_the_service_sdk_models(clock: FakeClock) -> None:
    scheduler = JobScheduler(FakeTarget(FLEET, offline=("lock-2",)), clock)
    scheduler.create(method_job())
    await run_to_end(scheduler)
    classes = {name: cls for name, cls in vars(sdk_models).items() if isinstance(cls, type)}
    response = Deserializer(classes)("JobResponse", json.loads(json.dumps(scheduler.get("lockdoor"))))
    assert response.status == "completed"
    assert response.type == "scheduleDeviceMethod"
    assert response.device_job_statistics.failed_count == 1
    assert response.device_job_statistics.succeeded_count == 2
    assert response.cloud_to_device_method.method_name == "lockDoor"
    assert response.start_time.timestamp() == clock.now
    assert response.end_time is not None


async def test_run_loop_drives_jobs_with_an_injected_sleep(clock: FakeClock) -> None:
    target = FakeTarget(FLEET)
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)
        await asyncio.sleep(0)

    scheduler = JobScheduler(target, clock, sleep=fake_sleep, poll_interval=5.0)
    scheduler.create(method_job(startTime="2023-11-14T22:13:32Z"))  # 12 s from now
    loop_task = asyncio.ensure_future(scheduler.run())
    for _ in range(200):
        await asyncio.sleep(0)
        if scheduler.get("lockdoor")["status"] == "completed":
            break
    scheduler.stop()
    await asyncio.wait_for(loop_task, timeout=60)
    assert scheduler.get("lockdoor")["status"] == "completed"
    assert slept[:3] == [5.0, 5.0, 2.0]  # woke exactly when the job was due


class StubbornTarget(FakeTarget):
    """A device call that ignores cancellation and answers anyway."""

    async def invoke_method(self, device_id, method_name, payload, response_timeout, connect_timeout):
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled_calls += 1
        return 200, {"late": True}


async def test_late_answers_after_cancel_change_nothing(clock: FakeClock) -> None:
    target = StubbornTarget(FLEET)
    target.gate.clear()
    scheduler = JobScheduler(target, clock)
    scheduler.create(method_job())
    await scheduler.tick()
    await settle()
    scheduler.cancel("lockdoor")
    await asyncio.wait_for(scheduler.wait_idle(), timeout=60)
    assert target.cancelled_calls == 3
    assert {r["status"] for r in scheduler.device_job_documents()} == {"cancelled"}
    assert all("outcome" not in r for r in scheduler.device_job_documents())
    assert scheduler.get("lockdoor")["status"] == "cancelled"


async def test_a_target_that_cannot_list_twins_fails_the_job_not_the_scheduler(clock: FakeClock) -> None:
    class Broken(FakeTarget):
        async def select_devices(self, condition) -> list[str]:
            raise RuntimeError("registry unavailable")

    scheduler = JobScheduler(Broken(FLEET), clock)
    scheduler.create(method_job("a"))
    scheduler.create(method_job("b"))
    await run_to_end(scheduler)
    for job_id in ("a", "b"):
        job = scheduler.get(job_id)
        assert job["status"] == "failed"
        assert job["failureReason"] == "Could not select the job's devices: registry unavailable"


async def test_a_job_whose_calls_all_fail_at_once_still_lets_other_tasks_run(clock: FakeClock, monkeypatch) -> None:
    from emulator.hub import slices
    monkeypatch.setattr(slices, "SLICE_SECONDS", 0.0)  # yield at every chance
    fleet = [twin(f"lock-{n}", kind="lock") for n in range(200)]
    scheduler = JobScheduler(FakeTarget(fleet, offline=tuple(t["deviceId"] for t in fleet)), clock)
    scheduler.create(method_job())
    job_running_when_ticked = []

    async def other_task() -> None:
        for _ in range(3):
            await asyncio.sleep(0)
            job_running_when_ticked.append(scheduler.get("lockdoor")["status"] == "running")

    other = asyncio.ensure_future(other_task())
    await run_to_end(scheduler)
    await other
    assert any(job_running_when_ticked)  # it ran while the job was working through its devices
    assert scheduler.get("lockdoor")["deviceJobStatistics"]["failedCount"] == 200
