"""IoT Hub jobs v2: scheduleDeviceMethod and scheduleUpdateTwin over a queryCondition.

The scheduler owns job state and timing; it reaches devices only through a small `JobTarget`
port (implemented by the hub model), reads time from an injected clock and hands every state
change to a persistence hook. Lifecycle:

    scheduled (startTime in the future) | queued (due now)
        -> running   devices chosen by queryCondition when the job starts
        -> completed (every device done; some may have failed)
         | failed    (maxExecutionTimeInSeconds passed, or the emulator restarted mid-run)
         | cancelled (cancel())

Restarts: `restore()` brings back every job. Jobs that had not started run as planned. A job that
was running ends `failed` with a failureReason instead of resuming, because a direct method such
as a reboot or lockDoor is not safe to send twice; its unfinished devices end `failed` with error
code JobInterrupted. Jobs that ran past maxExecutionTimeInSeconds end `failed` the same way, with
error code JobExecutionTimeExceeded on each unfinished device.

Driving it: the server runs `await scheduler.run()`; tests call `await scheduler.tick()` after
moving a fake clock, then `await scheduler.wait_idle()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Protocol

from .clock import Clock, system_clock
from .jobs_errors import JobAlreadyExists, JobError, JobNotFound
from .jobs_request import METHOD_JOB, parse_job_request
from .jobs_state import (
    CANCELLED,
    COMPLETED,
    FAILED,
    QUEUED,
    RUNNING,
    SCHEDULED,
    DeviceJob,
    Job,
)
from .query import Condition
from .slices import Slices

log = logging.getLogger(__name__)

#: Known IoT Hub error names by numeric code, for target errors that carry only a number.
_ERROR_NAMES = {404001: "DeviceNotFound", 404103: "DeviceNotOnline", 504101: "GatewayTimeout",
                429001: "ThrottlingException", 412001: "PreconditionFailed", 400004: "ArgumentInvalid"}


class JobTarget(Protocol):
    """What the scheduler needs from the hub: devices to select, and two ways to act on a device."""

    async def select_devices(self, condition: Condition) -> list[str]:
        """The ids of the devices whose twin matches `condition`, in registration order."""

    async def invoke_method(
        self, device_id: str, method_name: str, payload: Any, response_timeout: int, connect_timeout: int
    ) -> tuple[int, Any]:
        """Run a direct method: (status, payload) from the device, or raise an error carrying
        `error_name`/`error_code` (DeviceNotOnline 404103, GatewayTimeout 504101, ...)."""

    def update_twin(self, device_id: str, patch: dict) -> None:
        """Apply {"tags": .., "properties": {"desired": ..}} to one twin (raise as above on failure)."""


#: Changed device rows handed to `persist` at most per snapshot while a job runs.
SAVE_CHUNK = 1000

Sleep = Callable[[float], Awaitable[Any]]
Persist = Callable[[dict], None]


def device_error(error: BaseException) -> dict:
    """An exception from the target as the devices.jobs `error` field {code, description}."""
    code = getattr(error, "error_name", None)
    number = getattr(error, "error_code", None)
    if code is None and isinstance(number, int):
        code = _ERROR_NAMES.get(number)
    if code is None:
        code = "GatewayTimeout" if isinstance(error, (asyncio.TimeoutError, TimeoutError)) else "ServerError"
    description = getattr(error, "message", None) or str(error) or type(error).__name__
    return {"code": code, "description": description}


def twin_patch(update_twin: dict) -> dict:
    """The part of a job's updateTwin that a twin update applies: tags and desired properties."""
    patch: dict[str, Any] = {}
    if update_twin.get("tags"):
        patch["tags"] = update_twin["tags"]
    desired = (update_twin.get("properties") or {}).get("desired")
    if desired:
        patch["properties"] = {"desired": desired}
    return patch


class JobScheduler:
    def __init__(
        self,
        target: JobTarget,
        clock: Clock = system_clock,
        *,
        sleep: Sleep = asyncio.sleep,
        persist: Persist | None = None,
        max_concurrent_methods: int = 16,
        poll_interval: float = 1.0,
        persist_batch_seconds: float | None = None,
    ) -> None:
        """`persist` receives `Job.changes()`: the job and the device rows changed since its last call
        (the store merges rows by deviceId). `persist_batch_seconds`: None hands every change over at
        once; a number hands per-device progress over at most that often, or when SAVE_CHUNK rows are
        waiting (job creation, start and end still at once), and always before an answer shows it
        (get, query, the devices.jobs records), so nothing the hub has shown changes after a restart."""
        if max_concurrent_methods < 1:
            raise ValueError("max_concurrent_methods must be at least 1")
        self._target = target
        self._clock = clock
        self._sleep = sleep
        self._persist_hook = persist
        self._persist_batch_seconds = persist_batch_seconds
        self._unsaved: set[str] = set()  # jobs with device progress not yet handed to persist
        self._flush_timer: asyncio.TimerHandle | None = None
        self._poll_interval = poll_interval
        self._max_concurrent_methods = max_concurrent_methods
        self._method_slots = asyncio.Semaphore(max_concurrent_methods)
        self._jobs: dict[str, Job] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._wakeup: asyncio.Event | None = None
        self._stopping = False

    # ------------------------------------------------------------------ requests

    def create(self, job_request: dict, job_id: str | None = None) -> dict:
        """PUT /jobs/v2/{id}: validate, store and schedule; returns the JobResponse JSON."""
        now = self._clock()
        spec = parse_job_request(job_request, now, job_id)
        if spec.job_id in self._jobs:
            raise JobAlreadyExists(f"a job with id {spec.job_id!r} already exists")
        job = Job(spec=spec, created=now, status=SCHEDULED if spec.start_time > now else QUEUED)
        self._jobs[spec.job_id] = job
        self._save(job)
        if self._wakeup is not None:
            self._wakeup.set()  # a running loop starts a due job now rather than at its next poll
        return job.to_json()

    def get(self, job_id: str) -> dict:
        job = self._job(job_id)
        self._flush_before_answering(job)
        return job.to_json()

    def cancel(self, job_id: str) -> dict:
        """POST /jobs/v2/{id}/cancel. Unfinished devices end `cancelled`; a finished job is unchanged."""
        job = self._job(job_id)
        if job.finished:
            return job.to_json()
        now = self._clock()
        job.end_unfinished_devices(CANCELLED, now)
        self._end(job, CANCELLED, now)
        return job.to_json()

    def query(self, job_type: str | None = None, job_status: str | None = None) -> list[dict]:
        """GET /jobs/v2/query?jobType=&jobStatus= (either may be omitted), oldest first."""
        self._flush_progress()
        return [
            job.to_json()
            for job in self._jobs.values()
            if (job_type is None or job.spec.type == job_type)
            and (job_status is None or job.status == job_status)
        ]

    def device_job_documents(self) -> list[dict]:
        """Every per-device record of every job: the collection `FROM devices.jobs` queries."""
        return list(self.iter_device_job_documents())

    def iter_device_job_documents(self) -> Iterator[dict]:
        """The same records one at a time (a query over them can pause between records)."""
        for job in list(self._jobs.values()):
            for device in list(job.devices.values()):
                self._flush_before_answering(job)  # progress made while the query paused counts too
                yield device.to_json()

    def restore(self, snapshots: Iterable[dict]) -> None:
        """Bring back jobs saved through the persistence hook (call before run())."""
        now = self._clock()
        for snapshot in snapshots:
            try:
                job = Job.from_snapshot(snapshot)
            except (JobError, KeyError, TypeError, ValueError) as error:  # one bad record, not all
                log.warning("skipping a saved job that cannot be read: %s", error)
                continue
            if job.job_id in self._jobs:
                continue
            self._jobs[job.job_id] = job
            if job.status == RUNNING:
                unfinished = sum(1 for d in job.devices.values() if not d.finished)
                job.end_unfinished_devices(FAILED, now, {
                    "code": "JobInterrupted",
                    "description": "The emulator stopped before this device's part of the job finished.",
                })
                job.failure_reason = (
                    f"The emulator restarted while the job was running; it was not resumed because direct "
                    f"methods and twin updates may not be safe to repeat ({unfinished} device(s) unfinished)."
                )
                self._end(job, FAILED, now)

    # ------------------------------------------------------------------ driving

    async def tick(self) -> None:
        """Start due jobs and fail jobs past maxExecutionTimeInSeconds. Idempotent; cheap."""
        now = self._clock()
        for job in list(self._jobs.values()):
            if job.status in (QUEUED, SCHEDULED) and job.spec.start_time <= now:
                self._start(job, now)
            elif job.status == RUNNING and job.deadline is not None and now >= job.deadline:
                self._expire(job, now)
        await asyncio.sleep(0)  # let newly started jobs take their first step

    async def run(self) -> None:
        """Tick until stop(): every poll_interval, sooner when a job is due or created."""
        self._wakeup = asyncio.Event()
        self._stopping = False
        try:
            while not self._stopping:
                await self.tick()
                await self._pause(self._next_delay())
        finally:
            self._wakeup = None

    def stop(self) -> None:
        self._stopping = True
        if self._wakeup is not None:
            self._wakeup.set()

    async def wait_idle(self) -> None:
        """Wait for every running job task to finish (tests; orderly shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop the loop and abandon running job tasks (their jobs stay `running` in storage)."""
        self.stop()
        self._flush_progress()
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    # ------------------------------------------------------------------ internals

    def _job(self, job_id: str) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobNotFound(f"job {job_id!r} does not exist") from None

    def _next_delay(self) -> float:
        now, delay = self._clock(), self._poll_interval
        for job in self._jobs.values():
            if job.status in (QUEUED, SCHEDULED):
                delay = min(delay, job.spec.start_time - now)
            elif job.status == RUNNING and job.deadline is not None:
                delay = min(delay, job.deadline - now)
        return max(delay, 0.0)

    async def _pause(self, delay: float) -> None:
        assert self._wakeup is not None
        if self._wakeup.is_set():
            self._wakeup.clear()
            return
        sleeper = asyncio.ensure_future(self._sleep(delay))
        waker = asyncio.ensure_future(self._wakeup.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
            self._wakeup.clear()

    def _start(self, job: Job, now: float) -> None:
        job.status, job.started_at = RUNNING, now
        # Saved before any device is chosen: once a job has been seen running, a restart must end it
        # `failed`, not find it still queued and run its methods a second time.
        self._save(job)
        task = asyncio.ensure_future(self._run(job))
        self._tasks[job.job_id] = task
        task.add_done_callback(lambda _task, job_id=job.job_id: self._tasks.pop(job_id, None))

    async def _run(self, job: Job) -> None:
        if await self._select_devices(job):
            await self._execute(job)

    async def _select_devices(self, job: Job) -> bool:
        """Fill in the job's devices (the query yields while it scans); False if the job cannot run."""
        try:
            device_ids = await self._target.select_devices(job.spec.condition)
        except Exception as error:  # the job cannot run, but the scheduler must keep going
            log.exception("job %s could not select its devices", job.job_id)
            job.failure_reason = f"Could not select the job's devices: {error}"
            self._end(job, FAILED, self._clock())
            return False
        if job.finished:  # cancelled or expired while the devices were being selected
            return False
        start = job.started_at if job.started_at is not None else self._clock()
        slices = Slices()
        for device_id in device_ids:
            if device_id not in job.devices:
                job.add_device(DeviceJob(device_id, job.job_id, job.spec.type, created=start, start=start,
                                         last_updated=start))
                if len(job.unsaved_selection) >= SAVE_CHUNK:
                    self._save(job)
            await slices.pause_if_due()
        self._save(job)
        return True

    async def _execute(self, job: Job) -> None:
        if job.spec.type == METHOD_JOB:
            await self._invoke_all(job)
        else:
            patch = twin_patch(job.spec.update_twin or {})
            slices = Slices()
            for device in list(job.devices.values()):
                self._update_twin(job, device, patch)
                await slices.pause_if_due()  # let cancel() and deadlines interleave with big fleets
        if not job.finished:
            self._end(job, COMPLETED, self._clock())

    async def _invoke_all(self, job: Job) -> None:
        """At most max_concurrent_methods calls in flight: as many workers, each taking the next device
        when its call ends (a 10,000-device job holds a handful of tasks, not one per device). Their
        slices bound how long the loop runs job work at a stretch (calls that fail at once never
        suspend)."""
        devices = iter(list(job.devices.values()))  # shared: each device goes to exactly one worker
        slices = Slices()

        async def worker() -> None:
            for device in devices:
                if job.finished:
                    return
                if not device.finished:
                    await self._invoke(job, device)
                await slices.pause_if_due()

        workers = [asyncio.ensure_future(worker())
                   for _ in range(min(self._max_concurrent_methods, len(job.devices)))]
        try:
            await asyncio.gather(*workers)
        except asyncio.CancelledError:  # cancel() or the time limit: calls in flight must not reach devices
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise

    async def _invoke(self, job: Job, device: DeviceJob) -> None:
        method = job.spec.cloud_to_device_method or {}
        async with self._method_slots:
            if device.finished or job.finished:  # cancelled or expired while waiting for a slot
                return
            self._mark_running(job, device)
            try:
                status, payload = await self._target.invoke_method(
                    device.device_id,
                    method["methodName"],
                    method.get("payload"),
                    method["responseTimeoutInSeconds"],
                    method["connectTimeoutInSeconds"],
                )
            except asyncio.CancelledError:
                raise  # cancel() or the deadline already recorded this device's end
            except Exception as error:  # any failure is this device's outcome, not the job's
                self._finish_device(job, device, FAILED, error=device_error(error))
                return
            outcome = {"deviceMethodResponse": {"status": status, "payload": payload}}
            self._finish_device(job, device, COMPLETED, outcome=outcome)

    def _update_twin(self, job: Job, device: DeviceJob, patch: dict) -> None:
        if device.finished or job.finished:
            return
        self._mark_running(job, device)
        try:
            self._target.update_twin(device.device_id, patch)
        except Exception as error:
            self._finish_device(job, device, FAILED, error=device_error(error))
            return
        self._finish_device(job, device, COMPLETED, outcome={"deviceMethodResponse": None})

    def _mark_running(self, job: Job, device: DeviceJob) -> None:
        job.device_running(device, self._clock())
        self._save_progress(job)

    def _finish_device(self, job: Job, device: DeviceJob, status: str, **result: Any) -> None:
        if device.finished or job.finished:
            return  # a late answer after cancel or expiry changes nothing
        job.finish_device(device, status, self._clock(), **result)
        self._save_progress(job)

    def _expire(self, job: Job, now: float) -> None:
        limit = job.spec.max_execution_seconds
        job.end_unfinished_devices(FAILED, now, {
            "code": "JobExecutionTimeExceeded",
            "description": f"maxExecutionTimeInSeconds ({limit}) passed before this device finished.",
        })
        job.failure_reason = f"The job did not finish within maxExecutionTimeInSeconds ({limit} s)."
        self._end(job, FAILED, now)

    def _end(self, job: Job, status: str, now: float) -> None:
        job.status, job.end = status, now
        if status != COMPLETED:
            task = self._tasks.get(job.job_id)
            if task is not None and task is not _current_task():
                task.cancel()
        self._save(job)

    def _save_progress(self, job: Job) -> None:
        """Per-device progress: saved now, or with the next batch (see persist_batch_seconds)."""
        if self._persist_batch_seconds is None or self._persist_hook is None or len(job.unsaved) >= SAVE_CHUNK:
            self._save(job)  # (a full chunk now: one save never writes a whole big fleet's rows)
            return
        self._unsaved.add(job.job_id)
        if self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(self._persist_batch_seconds,
                                                                      self._flush_progress)

    def _flush_before_answering(self, job: Job) -> None:
        """A result the hub has shown (GET, query) must survive a restart unchanged: batched progress
        reaches the store before any answer that shows it."""
        if job.job_id in self._unsaved:
            self._save(job)

    def _flush_progress(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        for job_id in list(self._unsaved):
            self._save(self._jobs[job_id])

    def _save(self, job: Job) -> None:
        self._unsaved.discard(job.job_id)
        if self._persist_hook is None:
            job.unsaved.clear()
            return
        try:
            self._persist_hook(job.changes())
        except Exception:  # storage trouble must not stop devices being served
            log.exception("could not persist job %s", job.job_id)


def _current_task() -> asyncio.Task | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop (cancel() called from synchronous code)
        return None
