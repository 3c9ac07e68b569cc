"""Job and per-device job records: plain state, their JSON (JobResponse, devices.jobs rows) and
the snapshot the persistence hook receives. No scheduling here (see jobs.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .clock import iso_timestamp as format_utc
from .clock import parse_timestamp as parse_utc
from .jobs_request import METHOD_JOB, JobSpec, parse_job_request

# Job statuses (JobResponse.status) as IoT Hub spells them.
QUEUED, SCHEDULED, RUNNING = "queued", "scheduled", "running"
COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"
JOB_FINISHED = (COMPLETED, FAILED, CANCELLED)

# Per-device statuses (devices.jobs rows).
PENDING = "pending"
DEVICE_FINISHED = (COMPLETED, FAILED, CANCELLED)


@dataclass
class DeviceJob:
    """One device's part in a job: a row of `SELECT * FROM devices.jobs`."""

    device_id: str
    job_id: str
    job_type: str
    created: float
    start: float
    status: str = PENDING
    last_updated: float = 0.0
    end: float | None = None
    outcome: dict | None = None
    error: dict | None = None

    @property
    def finished(self) -> bool:
        return self.status in DEVICE_FINISHED

    def finish(
        self, status: str, now: float, *, outcome: dict | None = None, error: dict | None = None
    ) -> None:
        self.status, self.end, self.last_updated = status, now, now
        self.outcome, self.error = outcome, error

    def to_json(self) -> dict:
        row: dict[str, Any] = {
            "deviceId": self.device_id,
            "jobId": self.job_id,
            "jobType": self.job_type,
            "status": self.status,
            "startTimeUtc": format_utc(self.start),
            "endTimeUtc": format_utc(self.end) if self.end is not None else None,
            "createdDateTimeUtc": format_utc(self.created),
            "lastUpdatedDateTimeUtc": format_utc(self.last_updated or self.created),
        }
        if self.outcome is not None:
            row["outcome"] = self.outcome
        if self.error is not None:
            row["error"] = self.error
        return row

    @classmethod
    def from_json(cls, row: dict) -> DeviceJob:
        def when(name: str) -> float | None:
            return parse_utc(row[name]) if row.get(name) else None

        return cls(
            device_id=row["deviceId"],
            job_id=row["jobId"],
            job_type=row["jobType"],
            created=when("createdDateTimeUtc") or 0.0,
            start=when("startTimeUtc") or 0.0,
            status=row["status"],
            last_updated=when("lastUpdatedDateTimeUtc") or 0.0,
            end=when("endTimeUtc"),
            outcome=row.get("outcome"),
            error=row.get("error"),
        )


@dataclass
class Job:
    spec: JobSpec
    created: float
    status: str
    started_at: float | None = None  # when it really began running: the maxExecutionTime clock
    end: float | None = None
    failure_reason: str | None = None
    status_message: str | None = None
    devices: dict[str, DeviceJob] = field(default_factory=dict)
    #: Devices whose row changed since the last snapshot (what `changes()` hands over next).
    unsaved: dict[str, None] = field(default_factory=dict)
    #: Devices selected since the last snapshot, still pending: saved as ids, not rows (a pending row
    #: is the job's start time and the device id, so ids rebuild it; 10,000 rows would cost far more).
    unsaved_selection: list[str] = field(default_factory=list)
    #: Devices per status, kept as they change: GET polls a big job often.
    _counts: dict[str, int] = field(default_factory=lambda: {PENDING: 0, RUNNING: 0, COMPLETED: 0, FAILED: 0})

    @property
    def job_id(self) -> str:
        return self.spec.job_id

    @property
    def finished(self) -> bool:
        return self.status in JOB_FINISHED

    @property
    def deadline(self) -> float | None:
        return None if self.started_at is None else self.started_at + self.spec.max_execution_seconds

    def statistics(self) -> dict[str, int]:
        counts = self._counts
        return {
            "deviceCount": len(self.devices),
            "failedCount": counts[FAILED],
            "succeededCount": counts[COMPLETED],
            "runningCount": counts[RUNNING],
            "pendingCount": counts[PENDING],
        }

    def add_device(self, device: DeviceJob) -> None:
        """A device the job's query selected (pending)."""
        self._put(device)
        self.unsaved_selection.append(device.device_id)

    def _put(self, device: DeviceJob) -> None:
        replaced = self.devices.get(device.device_id)
        if replaced is not None:
            self._recount(replaced.status, None)
        self.devices[device.device_id] = device
        self._recount(None, device.status)

    def _recount(self, old: str | None, new: str | None) -> None:
        if old in self._counts:
            self._counts[old] -= 1
        if new in self._counts:
            self._counts[new] += 1

    def device_running(self, device: DeviceJob, now: float) -> None:
        # Not worth a saved row: after a restart a running device ends as a pending one does.
        self._recount(device.status, RUNNING)
        device.status, device.last_updated = RUNNING, now

    def finish_device(self, device: DeviceJob, status: str, now: float, **result: Any) -> None:
        self._recount(device.status, status)
        device.finish(status, now, **result)
        self.unsaved[device.device_id] = None

    def end_unfinished_devices(self, status: str, now: float, error: dict | None = None) -> None:
        for device in self.devices.values():
            if not device.finished:
                self.finish_device(device, status, now, error=error)

    def to_json(self) -> dict:
        """The JobResponse body (GET /jobs/v2/{id})."""
        spec = self.spec
        body: dict[str, Any] = {
            "jobId": spec.job_id,
            "queryCondition": spec.query_condition,
            "createdTime": format_utc(self.created),
            "startTime": format_utc(spec.start_time),
            "endTime": format_utc(self.end) if self.end is not None else None,
            "maxExecutionTimeInSeconds": spec.max_execution_seconds,
            "type": spec.type,
            "status": self.status,
            "deviceJobStatistics": self.statistics(),
        }
        if spec.type == METHOD_JOB:
            body["cloudToDeviceMethod"] = spec.cloud_to_device_method
        else:
            body["updateTwin"] = spec.update_twin
        if self.failure_reason is not None:
            body["failureReason"] = self.failure_reason
        if self.status_message is not None:
            body["statusMessage"] = self.status_message
        return body

    def snapshot(self) -> dict:
        """Everything needed to rebuild this job after a restart (JSON-serialisable)."""
        return {
            "job": self.to_json(),
            "startedAt": self.started_at,
            "devices": [device.to_json() for device in self.devices.values()],
        }

    def changes(self) -> dict:
        """A snapshot whose `devices` holds only the rows changed since the last `changes()`, and
        `selected` the ids of devices selected since (pending: no row yet): a store keeps the job and
        merges the rows by deviceId (a 10,000-device job is not rewritten per change)."""
        rows = [self.devices[device_id].to_json() for device_id in self.unsaved if device_id in self.devices]
        selected, self.unsaved_selection = self.unsaved_selection, []
        self.unsaved.clear()
        return {"job": self.to_json(), "startedAt": self.started_at, "devices": rows, "selected": selected}

    @classmethod
    def from_snapshot(cls, snapshot: dict) -> Job:
        body = snapshot["job"]
        spec = parse_job_request(body, now=0.0)
        job = cls(
            spec=spec,
            created=parse_utc(body["createdTime"]),
            status=body["status"],
            started_at=snapshot.get("startedAt"),
            end=parse_utc(body["endTime"]) if body.get("endTime") else None,
            failure_reason=body.get("failureReason"),
            status_message=body.get("statusMessage"),
        )
        rows = {row["deviceId"]: row for row in snapshot.get("devices", ())}
        selected_at = job.started_at if job.started_at is not None else job.created
        for device_id in snapshot.get("selected", ()):  # in the order the query selected them
            row = rows.pop(device_id, None)
            job._put(DeviceJob.from_json(row) if row is not None else
                     DeviceJob(device_id, job.job_id, spec.type, created=selected_at, start=selected_at,
                               last_updated=selected_at))
        for row in rows.values():  # saved as rows only (stores written before selections were kept)
            job._put(DeviceJob.from_json(row))
        return job  # what it was built from is saved already: nothing unsaved
