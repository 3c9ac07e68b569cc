"""A device result the hub has shown (GET /jobs/v2/{id}, the jobs query, a devices.jobs query) is
in the store when it is shown, so a kill right after cannot turn it into JobInterrupted."""

from __future__ import annotations

from typing import Any

from emulator.hub.jobs import JobScheduler

from .fakes import FakeClock, FakeTarget, settle, twin
from .test_restore import Store, job

FLEET = [twin("lock-1", kind="lock"), twin("lock-2", kind="lock")]


class OneSlowDevice(FakeTarget):
    """lock-1 answers at once; lock-2 holds its answer until `gate` opens (the job stays running)."""

    async def invoke_method(self, device_id: str, method_name: str, payload: Any,
                            response_timeout: int, connect_timeout: int) -> tuple[int, Any]:
        if device_id == "lock-1":
            self.calls.append((device_id, method_name, payload, response_timeout, connect_timeout))
            return 200, {"locked": True}
        return await super().invoke_method(device_id, method_name, payload, response_timeout, connect_timeout)


async def _running_job_with_one_answer(store: Store) -> JobScheduler:
    target = OneSlowDevice(FLEET)
    target.gate.clear()
    # A batch window far longer than the test: only an answer-time flush can save the result.
    scheduler = JobScheduler(target, FakeClock(), persist=store, persist_batch_seconds=3600)
    scheduler.create(job("locks"))
    await scheduler.tick()
    await settle()
    return scheduler


def _after_a_kill(store: Store) -> dict[str, dict]:
    """A new scheduler restored from what was saved (nothing flushed at close: the process died)."""
    restarted = JobScheduler(FakeTarget(FLEET), FakeClock(1_700_000_100.0), persist=store)
    restarted.restore(store.load())
    return {d["deviceId"]: d for d in restarted.device_job_documents()}


async def test_a_result_shown_by_get_job_survives_a_kill() -> None:
    store = Store()
    scheduler = await _running_job_with_one_answer(store)
    shown = scheduler.get("locks")
    assert shown["status"] == "running" and shown["deviceJobStatistics"]["succeededCount"] == 1

    devices = _after_a_kill(store)
    assert devices["lock-1"]["status"] == "completed"
    assert devices["lock-1"]["outcome"]["deviceMethodResponse"]["payload"] == {"locked": True}
    assert devices["lock-2"]["error"]["code"] == "JobInterrupted"  # never shown finished: interrupted


async def test_a_result_shown_by_a_devices_jobs_query_survives_a_kill() -> None:
    store = Store()
    scheduler = await _running_job_with_one_answer(store)
    shown = {d["deviceId"]: d for d in scheduler.iter_device_job_documents()}
    assert shown["lock-1"]["status"] == "completed"

    assert _after_a_kill(store)["lock-1"]["status"] == "completed"


async def test_a_result_shown_by_the_jobs_query_survives_a_kill() -> None:
    store = Store()
    scheduler = await _running_job_with_one_answer(store)
    [shown] = scheduler.query()
    assert shown["deviceJobStatistics"]["succeededCount"] == 1

    assert _after_a_kill(store)["lock-1"]["status"] == "completed"


async def test_progress_nobody_has_seen_still_waits_for_its_batch() -> None:
    store = Store()
    await _running_job_with_one_answer(store)
    # Not shown to anyone: batching still applies (the kill interrupts it, as the docs say).
    assert _after_a_kill(store)["lock-1"]["error"]["code"] == "JobInterrupted"
