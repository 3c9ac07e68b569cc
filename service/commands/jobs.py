"""job schedule-method / schedule-twin-update / show / list / cancel / wait."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import click

from .. import jobspec
from ..context import AppState, app_state, global_options
from ..errors import Interrupted, JobFailed, WaitTimeout
from ..inputs import check_method_payload, parse_json_option, parse_start_time, quote_query_string
from ..output import job_counts, show_device_jobs, show_job, show_jobs
from ..waiting import PollTimedOut, wait_for_job
from .methods import connect_timeout_option, response_timeout_option

JOB_TYPES = ("scheduleDeviceMethod", "scheduleUpdateTwin")
JOB_STATUSES = ("unknown", "enqueued", "running", "completed", "failed", "cancelled", "scheduled", "queued")


def targeting_and_timing(command: Callable) -> Callable:
    """The options both schedule commands share: which devices, when, how long, and waiting."""
    decorators = [
        click.option("--device", "device_ids", multiple=True, metavar="ID",
                     help="Target this device (repeat for several). Builds deviceId IN ['a','b']."),
        click.option("--query-condition", metavar="WHERE",
                     help="Target the devices matching this WHERE clause, e.g. \"tags.site = 'paris'\"."),
        click.option("--start-time", default="now", show_default=True, metavar="ISO|now|+10m",
                     help="When to start: ISO 8601 (UTC when no offset), now, or +N with s, m, h or d."),
        click.option("--max-execution-time", type=click.IntRange(min=1), default=3600, show_default=True,
                     help="Seconds the job may run before the hub stops it."),
        click.option("--job-id", help="Job id. Default: a fresh UUID."),
        click.option("--wait", is_flag=True, help="Wait for the job to finish, showing its progress "
                                                   "(non-zero exit when it fails or is cancelled)."),
        click.option("--timeout", type=click.FloatRange(min=0), default=300, show_default=True,
                     help="With --wait: seconds to wait before giving up (exit code 14)."),
        click.option("--poll-interval", type=click.FloatRange(min=0.05), default=5, show_default=True,
                     help="With --wait: longest pause in seconds between job reads (starts at 0.25 s)."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


@click.group()
@global_options
def job() -> None:
    """Schedule jobs across many devices (methods, twin updates) and follow them."""


@job.command("schedule-method")
@click.option("--method", "method_name", required=True, metavar="NAME", help="Direct method to call.")
@click.option("--payload", metavar="JSON|@FILE", help="Method payload: JSON text or @FILE. Default: none.")
@response_timeout_option("each device")
@connect_timeout_option("each device")
@targeting_and_timing
@global_options
def schedule_method(method_name: str, payload: str | None, response_timeout: int, connect_timeout: int,
                    device_ids: tuple[str, ...], query_condition: str | None, start_time: str,
                    max_execution_time: int, job_id: str | None, wait: bool, timeout: float,
                    poll_interval: float) -> None:
    """Schedule a direct method call on many devices (e.g. lockDoor across a fleet)."""
    state = app_state()
    body = parse_json_option(payload, "--payload")
    check_method_payload(body)
    request = jobspec.method_job(job_id or str(uuid.uuid4()), method_name, body, response_timeout,
                                 connect_timeout, jobspec.query_condition(device_ids, query_condition),
                                 parse_start_time(start_time, state.now()), max_execution_time)
    _create_and_maybe_wait(state, request, wait, timeout, poll_interval)


@job.command("schedule-twin-update")
@click.option("--desired", metavar="JSON|@FILE", help="Desired properties patch (JSON object; null deletes).")
@click.option("--tags", metavar="JSON|@FILE", help="Tags patch (JSON object; null deletes).")
@targeting_and_timing
@global_options
def schedule_twin_update(desired: str | None, tags: str | None, device_ids: tuple[str, ...],
                         query_condition: str | None, start_time: str, max_execution_time: int,
                         job_id: str | None, wait: bool, timeout: float, poll_interval: float) -> None:
    """Schedule a twin update (desired properties and/or tags) on many devices."""
    state = app_state()
    request = jobspec.twin_update_job(
        job_id or str(uuid.uuid4()), parse_json_option(desired, "--desired", want_object=True),
        parse_json_option(tags, "--tags", want_object=True),
        jobspec.query_condition(device_ids, query_condition),
        parse_start_time(start_time, state.now()), max_execution_time)
    _create_and_maybe_wait(state, request, wait, timeout, poll_interval)


def _create_and_maybe_wait(state: AppState, request: dict, wait: bool, timeout: float,
                           poll_interval: float) -> None:
    created = state.hub().create_job(request)
    out = state.output()
    if not wait:
        out.json(created) if out.json_mode else show_job(out, created)
        return
    if not out.json_mode:
        out.line(f"Scheduled job {created.get('jobId') or request['jobId']}")
    _wait_and_report(state, created.get("jobId") or request["jobId"], timeout, poll_interval)


@job.command("wait")
@click.argument("job_id", metavar="ID")
@click.option("--timeout", type=click.FloatRange(min=0), default=300, show_default=True,
              help="Seconds to wait before giving up (exit code 14).")
@click.option("--poll-interval", type=click.FloatRange(min=0.05), default=5, show_default=True,
              help="Longest pause in seconds between job reads (starts at 0.25 s and backs off).")
@global_options
def wait_command(job_id: str, timeout: float, poll_interval: float) -> None:
    """Follow job ID until it completes, fails or is cancelled, with live device counts.

    Exits 0 when the job completed, 15 when it failed or was cancelled, 14 on timeout.
    """
    _wait_and_report(app_state(), job_id, timeout, poll_interval)


def _wait_and_report(state: AppState, job_id: str, timeout: float, poll_interval: float) -> None:
    hub, out = state.hub(), state.output()
    with out.job_progress(job_id) as update:
        try:
            final = wait_for_job(hub, state.poller(poll_interval), job_id, timeout,
                                 lambda job, elapsed: update(job))
        except PollTimedOut as e:
            raise WaitTimeout(f"job {job_id} is still {e.last.get('status')} after {timeout:g} s "
                              f"{job_counts(e.last)}") from None
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted: job {job_id} keeps running on the hub; follow it with "
                              f"`iothub-service job wait {job_id}` or stop it with "
                              f"`iothub-service job cancel {job_id}`") from None
    if out.json_mode:
        out.json(final)
    else:
        show_job(out, final)
        failed = (final.get("deviceJobStatistics") or {}).get("failedCount") or 0
        if failed:  # a job "completes" even when devices failed: say where to see why
            out.note(f"{failed} device{'s' if failed != 1 else ''} failed: "
                     f"`iothub-service job show {job_id} --devices` shows why")
    status = final.get("status")
    if status != "completed":
        reason = final.get("failureReason") or final.get("statusMessage")
        raise JobFailed(f"job {job_id} {'was cancelled' if status == 'cancelled' else 'failed'}"
                        + (f": {reason}" if reason else ""))


@job.command("show")
@click.argument("job_id", metavar="ID")
@click.option("--devices", is_flag=True,
              help="Add each device's outcome (a devices.jobs query); in --json as a \"devices\" list.")
@global_options
def show(job_id: str, devices: bool) -> None:
    """Print job ID: type, status, times and device counts."""
    state = app_state()
    condition = f"devices.jobs.jobId = {quote_query_string(job_id, 'job id')}" if devices else None
    hub, out = state.hub(), state.output()
    data = hub.get_job(job_id)
    items = hub.query(f"SELECT * FROM devices.jobs WHERE {condition}") if condition else None
    if out.json_mode:
        out.json(data if items is None else {**data, "devices": items})
        return
    show_job(out, data)
    if items is not None:
        out.line()
        show_device_jobs(out, items)


@job.command("list")
@click.option("--type", "job_type", type=click.Choice(JOB_TYPES), help="Only jobs of this type.")
@click.option("--status", type=click.Choice(JOB_STATUSES), help="Only jobs in this status.")
@global_options
def list_command(job_type: str | None, status: str | None) -> None:
    """List the hub's scheduled jobs."""
    state = app_state()
    jobs = state.hub().list_jobs(job_type, status)
    out = state.output()
    out.json(jobs) if out.json_mode else show_jobs(out, jobs)


@job.command("cancel")
@click.argument("job_id", metavar="ID")
@global_options
def cancel(job_id: str) -> None:
    """Cancel job ID (devices it already reached are not rolled back)."""
    state = app_state()
    data = state.hub().cancel_job(job_id)
    out = state.output()
    if out.json_mode:
        out.json(data)
    else:
        out.line(f"Cancelled job {job_id} (status: {data.get('status')})")
