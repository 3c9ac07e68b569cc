"""Batched persistence (persist_batch_seconds): big jobs hand over per-device progress in batches,
not one whole-job snapshot per device change, and nothing acknowledged is lost at shutdown."""

from __future__ import annotations

import asyncio

from emulator.hub.jobs import JobScheduler

from .fakes import FakeClock, FakeTarget, settle, twin

FLEET = [twin(f"lamp-{n}", kind="lamp") for n in range(50)]


def lamp_job(job_id: str = "lamps") -> dict:
    return {"jobId": job_id, "type": "scheduleDeviceMethod", "queryCondition": "tags.kind = 'lamp'",
            "cloudToDeviceMethod": {"methodName": "on"}, "maxExecutionTimeInSeconds": 60}


class Recorder:
    def __init__(self) -> None:
        self.snapshots: list[dict] = []

    def __call__(self, snapshot: dict) -> None:
        self.snapshots.append(snapshot)

    def last(self, job_id: str) -> dict:
        return [s for s in self.snapshots if s["job"]["jobId"] == job_id][-1]


async def test_progress_is_saved_in_batches_and_the_end_at_once() -> None:
    saved = Recorder()
    scheduler = JobScheduler(FakeTarget(FLEET), FakeClock(), persist=saved, persist_batch_seconds=0.01)
    scheduler.create(lamp_job())
    await scheduler.tick()
    await asyncio.wait_for(scheduler.wait_idle(), timeout=10)
    # created, started, ended, plus at most a few batches: not 2 per device (100+)
    assert len(saved.snapshots) < 10
    final = saved.last("lamps")
    assert final["job"]["status"] == "completed"
    assert final["job"]["deviceJobStatistics"]["succeededCount"] == 50
    await scheduler.aclose()


async def test_a_batch_is_written_while_the_job_runs() -> None:
    saved = Recorder()
    target = FakeTarget(FLEET[:3])
    target.gate.clear()  # devices hold their answers: the job stays running
    scheduler = JobScheduler(target, FakeClock(), persist=saved, persist_batch_seconds=0.01)
    scheduler.create(lamp_job())
    await scheduler.tick()
    await settle()
    before = len(saved.snapshots)
    for _ in range(500):  # the batch timer runs on the loop's own clock; bounded wait
        if len(saved.snapshots) > before:
            break
        await asyncio.sleep(0.005)
    assert saved.last("lamps")["job"]["deviceJobStatistics"]["runningCount"] == 3
    await scheduler.aclose()


async def test_unsaved_progress_is_flushed_at_close() -> None:
    saved = Recorder()
    target = FakeTarget(FLEET[:3])
    target.gate.clear()
    scheduler = JobScheduler(target, FakeClock(), persist=saved, persist_batch_seconds=3600)
    scheduler.create(lamp_job())
    await scheduler.tick()
    await settle()
    assert saved.last("lamps")["job"]["deviceJobStatistics"]["runningCount"] == 0  # not yet handed over
    await scheduler.aclose()
    assert saved.last("lamps")["job"]["deviceJobStatistics"]["runningCount"] == 3


async def test_each_save_hands_over_only_the_rows_that_changed(monkeypatch) -> None:
    from emulator.hub import jobs
    monkeypatch.setattr(jobs, "SAVE_CHUNK", 20)
    saved = Recorder()
    scheduler = JobScheduler(FakeTarget(FLEET), FakeClock(), persist=saved, persist_batch_seconds=3600)
    scheduler.create(lamp_job())
    await scheduler.tick()
    await asyncio.wait_for(scheduler.wait_idle(), timeout=10)
    await scheduler.aclose()
    assert saved.snapshots[0]["devices"] == []  # created: no devices yet
    assert max(len(s["devices"]) for s in saved.snapshots) <= 20
    final_rows: dict[str, dict] = {}
    for snapshot in saved.snapshots:
        final_rows.update((row["deviceId"], row) for row in snapshot["devices"])
    assert len(final_rows) == 50
    assert {row["status"] for row in final_rows.values()} == {"completed"}
