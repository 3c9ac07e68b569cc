"""2. Job fan-out: scheduleDeviceMethod (lockDoor) and scheduleUpdateTwin over N connected raw-MQTT
bench devices (bench/fleet.py, not the product's iothub-device: section 5 runs that). Time from the job
request (PUT /jobs/v2) to `completed` as the service sees it (GET polling), the job's own
createdTime -> endTime, and device operations per second; the method job is compared with mosquitto
delivering one request to the same devices and collecting every answer (report.REFERENCES). A job still running at the time limit is
cancelled and reported with its progress."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from emulator.hub.jobs_request import parse_utc

from .context import BenchContext
from .hubs import HubInfo, RawServiceCaller, fleet_counters
from .processes import Child
from .report import Figure, Target

SECTION = "2 jobs"
METHOD_JOB_TARGET = Target("<=", 10.0, "s")


RAW_METHOD = ("lockDoor", {"minutes": 1})  # the raw clients answer any method alike


def job_request(job_type: str, devices: int, max_seconds: int, condition: str | None = None,
                method: tuple[str, Any] = RAW_METHOD) -> dict[str, Any]:
    """A JobRequest for the first `devices` bench devices (tags.index < N), or those `condition`
    selects, starting now."""
    body: dict[str, Any] = {
        "jobId": f"bench-{job_type}-{devices}-{uuid.uuid4().hex[:8]}", "type": job_type,
        "queryCondition": condition or f"tags.bench = 'fleet' AND tags.index < {devices}",
        "startTime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "maxExecutionTimeInSeconds": max_seconds}
    if job_type == "scheduleDeviceMethod":
        body["cloudToDeviceMethod"] = {"methodName": method[0], "payload": method[1],
                                       "responseTimeoutInSeconds": 30, "connectTimeoutInSeconds": 0}
    else:
        body["updateTwin"] = {"properties": {"desired": {"bench": {"run": uuid.uuid4().hex[:8]}}}, "etag": "*"}
    return body


def poll_interval(devices: int) -> float:
    """GET /jobs/v2/{id} counts every device row: poll big jobs less often so polling stays cheap."""
    return 0.02 if devices <= 1000 else 0.1


def run_job(caller: RawServiceCaller, job_type: str, devices: int, time_limit: float,
            condition: str | None = None, method: tuple[str, Any] = RAW_METHOD) -> dict[str, Any]:
    body = job_request(job_type, devices, max_seconds=max(int(time_limit) + 60, 60), condition=condition,
                       method=method)
    started = time.perf_counter()
    status, job = caller.request("PUT", f"/jobs/v2/{body['jobId']}", body)
    if status != 200:
        raise RuntimeError(f"creating the job answered HTTP {status}: {str(job)[:200]}")
    deadline = started + time_limit
    while job.get("status") not in ("completed", "failed", "cancelled"):
        if time.perf_counter() > deadline:
            _, job = caller.request("POST", f"/jobs/v2/{body['jobId']}/cancel")
            break
        time.sleep(poll_interval(devices))
        _, job = caller.request("GET", f"/jobs/v2/{body['jobId']}")
    wall = time.perf_counter() - started
    stats = job.get("deviceJobStatistics") or {}
    own = None
    if job.get("endTime") and job.get("createdTime"):
        own = parse_utc(job["endTime"]) - parse_utc(job["createdTime"])
    return {"type": job_type, "devices": devices, "status": job.get("status"), "wall_seconds": wall,
            "started": started, "desired": (body.get("updateTwin") or {}).get("properties", {}).get("desired"),
            "job_seconds": own, "succeeded": stats.get("succeededCount", 0), "failed": stats.get("failedCount", 0),
            "device_count": stats.get("deviceCount", 0), "failure_reason": job.get("failureReason")}


#: Appended to the labels of rows measured on an emulator started in memory, which users do not run.
IN_MEMORY = "; emulator IN MEMORY, not as shipped"


def run(ctx: BenchContext, hub: HubInfo, fleets: list[tuple[Child, dict[str, Any]]],
        reference: dict[str, Any], *, sizes: tuple[int, ...] | None = None, in_memory: bool = False) -> None:
    caller = RawServiceCaller(hub, timeout=120)
    connected = sum(report["connected"] for _, report in fleets)
    outcomes = []
    suffix = IN_MEMORY if in_memory else ""
    try:
        for devices in sizes or ctx.sizes.fanout_devices:
            for job_type, label in (("scheduleDeviceMethod", f"method job (lockDoor), raw bench devices{suffix}"),
                                    ("scheduleUpdateTwin", f"twin job (desired), raw bench devices{suffix}")):
                ctx.budget.require(20, f"{SECTION} {label} over {devices} devices")
                limit = ctx.budget.cap(ctx.sizes.job_time_limit_s)
                ctx.progress(f"  {label} over {devices} devices (limit {limit:.0f} s)")
                before = fleet_counters(fleets)
                ctx.results.details.setdefault("raw_fleet", {"devices": sum(r["connected"] for _, r in fleets),
                                                             "rss_bytes": before["rss_bytes"]})
                outcome = run_job(caller, job_type, devices, limit)
                if job_type == "scheduleUpdateTwin":
                    outcome["acks_seconds"] = wait_for_acks(
                        lambda: fleet_counters(fleets)["reported"] - before["reported"], devices,
                        outcome["started"], ctx.budget.cap(ctx.sizes.job_time_limit_s))
                after = fleet_counters(fleets)
                outcome["device_side"] = {k: after[k] - before[k] for k in ("methods", "patches", "reported")}
                outcomes.append(outcome)
                _add_figures(ctx, label, outcome, limit, reference.get("fanout", {}).get(devices),
                             "broadcast" if devices == connected else "per-device")
    finally:
        caller.close()
        ctx.results.details["jobs_in_memory" if in_memory else "jobs"] = outcomes


def wait_for_acks(count: Callable[[], int], devices: int, started: float, limit: float) -> float | None:
    """Seconds from the twin job's start until `count()` (the devices' reported acknowledgements of
    its desired patch) reaches `devices`; None if not within `limit`."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        if count() >= devices:
            return time.perf_counter() - started
        time.sleep(0.1)
    return None


def _add_figures(ctx: BenchContext, label: str, outcome: dict[str, Any], limit: float,
                 reference_seconds: float | None, vs: str) -> None:
    devices = outcome["devices"]
    is_method = outcome["type"] == "scheduleDeviceMethod"
    done = outcome["status"] == "completed" and outcome["succeeded"] == devices
    seconds = outcome["wall_seconds"] if done else None
    reference = reference_seconds if is_method else None
    ctx.results.add(Figure(SECTION, f"{label}, {devices:,} devices: start -> completed", seconds, "s",
                           reference=reference, vs=vs if reference else "",
                           target=METHOD_JOB_TARGET if is_method and devices >= 10000 else None))
    finished = outcome["succeeded"] + outcome["failed"]
    ops = outcome["succeeded"] / outcome["wall_seconds"] if outcome["wall_seconds"] > 0 else None
    ref_ops = devices / reference if reference else None
    ctx.results.add(Figure(SECTION, f"{label}, {devices:,} devices: device operations/s", ops, "ops/s",
                           reference=ref_ops, vs=vs if ref_ops else ""))
    if not is_method:
        acks = outcome.get("acks_seconds")
        ctx.results.add(Figure(SECTION, f"{label}, {devices:,} devices: reported acknowledgements/s",
                               devices / acks if acks else None, "patches/s"))
    if not done:
        ctx.results.note(f"{label} over {devices:,} devices: {outcome['status']} after "
                         f"{outcome['wall_seconds']:.1f} s (limit {limit:.0f} s) with {finished:,} of "
                         f"{devices:,} devices finished ({outcome['succeeded']:,} succeeded)"
                         + (f": {outcome['failure_reason']}" if outcome.get("failure_reason") else ""))
