"""Persistence: every change reaches the hook as JSON; a restarted scheduler picks jobs back up."""

from __future__ import annotations

import asyncio
import json

from emulator.hub.jobs import JobScheduler, device_error

from .fakes import FakeClock, FakeHubError, FakeTarget, settle, twin

FLEET = [twin("lock-1", kind="lock"), twin("lock-2", kind="lock")]


def job(job_id: str, **extra) -> dict:
    return {"jobId": job_id, "type": "scheduleDeviceMethod", "queryCondition": "tags.kind = 'lock'",
            "cloudToDeviceMethod": {"methodName": "lockDoor"}, "maxExecutionTimeInSeconds": 60, **extra}


class Store:
    """Keeps the latest job record, merges device rows by deviceId and appends selected ids, through a
    JSON round trip like a real store (the hub's `save_job` does the same)."""

    def __init__(self) -> None:
        self.saved: dict[str, str] = {}
        self.rows: dict[str, dict[str, str]] = {}
        self.selected: dict[str, list[str]] = {}

    def __call__(self, changes: dict) -> None:
        job_id = changes["job"]["jobId"]
        self.saved[job_id] = json.dumps({**changes, "devices": [], "selected": []})
        self.rows.setdefault(job_id, {}).update((r["deviceId"], json.dumps(r)) for r in changes["devices"])
        self.selected.setdefault(job_id, []).extend(json.loads(json.dumps(changes["selected"])))

    def load(self) -> list[dict]:
        return [{**json.loads(text), "devices": [json.loads(r) for r in self.rows[job_id].values()],
                 "selected": self.selected[job_id]}
                for job_id, text in self.saved.items()]


async def test_restart_keeps_finished_jobs_fails_running_ones_and_runs_scheduled_ones() -> None:
    clock, store = FakeClock(), Store()
    first_target = FakeTarget(FLEET)
    first = JobScheduler(first_target, clock, persist=store)
    first.create(job("done"))
    await first.tick()
    await first.wait_idle()

    first_target.gate.clear()
    first.create(job("interrupted"))
    first.create(job("later", startTime="2023-11-14T22:20:00Z"))
    await first.tick()
    await settle()
    assert first.get("interrupted")["status"] == "running"
    await first.aclose()  # the emulator dies: nothing more is saved for the running job

    clock.advance(10)
    second_target = FakeTarget(FLEET)
    second = JobScheduler(second_target, clock, persist=store)
    second.restore(store.load())

    done = second.get("done")
    assert done["status"] == "completed"
    assert done["deviceJobStatistics"]["succeededCount"] == 2

    interrupted = second.get("interrupted")
    assert interrupted["status"] == "failed"
    assert "restarted while the job was running" in interrupted["failureReason"]
    assert "2 device(s) unfinished" in interrupted["failureReason"]
    assert interrupted["deviceJobStatistics"]["failedCount"] == 2
    rows = [r for r in second.device_job_documents() if r["jobId"] == "interrupted"]
    assert {r["error"]["code"] for r in rows} == {"JobInterrupted"}
    assert json.loads(store.saved["interrupted"])["job"]["status"] == "failed"  # saved again

    assert second.get("later")["status"] == "scheduled"
    clock.advance(400)
    await second.tick()
    await second.wait_idle()
    assert second.get("later")["status"] == "completed"
    assert [c[0] for c in second_target.calls] == ["lock-1", "lock-2"]  # only the scheduled job ran


async def test_restored_records_keep_their_times_and_outcomes() -> None:
    clock, store = FakeClock(), Store()
    first = JobScheduler(FakeTarget(FLEET, offline=("lock-2",)), clock, persist=store)
    first.create(job("j"))
    await first.tick()
    await first.wait_idle()
    second = JobScheduler(FakeTarget(FLEET), FakeClock(2_000_000_000), persist=store)
    second.restore(store.load())
    assert second.get("j") == first.get("j")
    assert second.device_job_documents() == first.device_job_documents()


async def test_a_failing_persistence_hook_does_not_stop_jobs() -> None:
    def broken(snapshot: dict) -> None:
        raise OSError("disk full")

    scheduler = JobScheduler(FakeTarget(FLEET), FakeClock(), persist=broken)
    scheduler.create(job("j"))
    await scheduler.tick()
    await scheduler.wait_idle()
    assert scheduler.get("j")["status"] == "completed"


def test_device_errors_without_a_name_still_get_a_code() -> None:
    assert device_error(FakeHubError("DeviceNotOnline", 404103, "offline")) == {
        "code": "DeviceNotOnline", "description": "offline"}

    class CodeOnly(Exception):
        error_code = 504101

    assert device_error(CodeOnly("no answer"))["code"] == "GatewayTimeout"
    assert device_error(TimeoutError())["code"] == "GatewayTimeout"
    assert device_error(RuntimeError("boom")) == {"code": "ServerError", "description": "boom"}


async def test_an_unreadable_saved_job_is_skipped() -> None:
    clock, store = FakeClock(), Store()
    first = JobScheduler(FakeTarget(FLEET), clock, persist=store)
    first.create(job("good", startTime="2030-01-01T00:00:00Z"))
    saved = store.load() + [{"job": {"jobId": "bad"}}, {"nothing": True}]
    second = JobScheduler(FakeTarget(FLEET), clock)
    second.restore(saved)
    assert [j["jobId"] for j in second.query()] == ["good"]


class SlowSelection(FakeTarget):
    """Device selection (a query over the fleet) that has not finished when the emulator dies."""

    def __init__(self, twins: list[dict]) -> None:
        super().__init__(twins)
        self.selection_gate = asyncio.Event()

    async def select_devices(self, condition):
        await self.selection_gate.wait()
        return await super().select_devices(condition)


async def test_a_job_killed_while_choosing_its_devices_is_not_run_again() -> None:
    clock, store = FakeClock(), Store()
    first = JobScheduler(SlowSelection(FLEET), clock, persist=store)
    first.create(job("j"))
    await first.tick()
    await settle()
    assert first.get("j")["status"] == "running"  # what a client may already have seen
    await first.aclose()  # killed before the job's task got past its device query

    clock.advance(10)
    second_target = FakeTarget(FLEET)
    second = JobScheduler(second_target, clock, persist=store)
    second.restore(store.load())
    await second.tick()
    await second.wait_idle()
    restored = second.get("j")
    assert restored["status"] == "failed"
    assert "restarted while the job was running" in restored["failureReason"]
    assert second_target.calls == []  # no lockDoor sent twice
