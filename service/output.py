"""Rendering: --json prints the hub's own JSON shapes; human output uses rich tables.

rich is imported lazily (keeps --help fast). Spinners and progress bars appear on a terminal only;
elsewhere progress goes to stderr as plain lines, so pipes and CliRunner output stay clean.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from hubsettings import mask_key, mask_secrets

PIPE_WIDTH = 160  # rich would wrap at 80 columns when not on a terminal


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def compact(value: Any, limit: int = 60) -> str:
    """One table cell: scalars as is, structures as compact JSON, cut at limit characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mask_device(device: dict) -> dict:
    """A device identity with its symmetric keys masked (only `device connection-string --show-key`
    ever shows a key)."""
    masked = copy.deepcopy(device)
    keys = ((masked.get("authentication") or {}).get("symmetricKey") or {})
    for name in ("primaryKey", "secondaryKey"):
        if keys.get(name):
            keys[name] = mask_key(keys[name])
    return masked


def without_metadata(properties: dict | None) -> dict:
    """Desired/reported properties minus $metadata, which buries the values in human output."""
    return {k: v for k, v in (properties or {}).items() if k != "$metadata"}


class Output:
    def __init__(self, json_mode: bool = False, tty: bool | None = None):
        self.json_mode = json_mode
        self.tty = sys.stdout.isatty() if tty is None else tty

    # -- primitives ---------------------------------------------------------------------------------
    def json(self, data: Any) -> None:
        click.echo(mask_secrets(dumps(data)))

    def line(self, text: str = "") -> None:
        click.echo(mask_secrets(text))

    def note(self, text: str) -> None:
        """Progress and side remarks: stderr, never part of the result."""
        click.echo(mask_secrets(text), err=True)

    def console(self, stderr: bool = False) -> Any:
        from rich.console import Console
        stream = click.get_text_stream("stderr" if stderr else "stdout")
        return Console(file=stream, width=None if self.tty else PIPE_WIDTH, force_terminal=self.tty,
                       highlight=False, soft_wrap=not self.tty)

    def table(self, columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
        from rich import box
        from rich.table import Table
        table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, title_justify="left")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*[mask_secrets("" if cell is None else compact(cell)) for cell in row])
        self.console().print(table)

    def fields(self, pairs: list[tuple[str, Any]]) -> None:
        width = max(len(name) for name, _ in pairs)
        for name, value in pairs:
            if value is not None:
                self.line(f"{name + ':':<{width + 1}} {compact(value, 200)}")

    def block(self, title: str, data: Any) -> None:
        self.line(f"{title}:")
        for text in dumps(data).splitlines():
            self.line(f"  {text}")

    # -- progress -----------------------------------------------------------------------------------
    @contextmanager
    def spinner(self, text: str) -> Iterator[Any]:
        """Yields update(text): a rich spinner on a terminal, else one stderr line at the start."""
        if self.tty and not self.json_mode:
            with self.console(stderr=True).status(text) as status:
                yield lambda new_text: status.update(new_text)
        else:
            if not self.json_mode:
                self.note(text)
            yield lambda new_text: None

    @contextmanager
    def job_progress(self, job_id: str) -> Iterator[Any]:
        """Yields update(job): a live progress bar of deviceJobStatistics on a terminal, else a stderr
        line whenever the status or the counts change."""
        if self.tty and not self.json_mode:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
            with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[counts]}"),
                          TimeElapsedColumn(), console=self.console(stderr=True)) as progress:
                task = progress.add_task(f"job {job_id}", total=None, counts="")

                def update(job: dict) -> None:
                    stats = job.get("deviceJobStatistics") or {}
                    done = (stats.get("succeededCount") or 0) + (stats.get("failedCount") or 0)
                    progress.update(task, total=stats.get("deviceCount") or None, completed=done,
                                    description=f"job {job_id} {job.get('status')}",
                                    counts=job_counts(job))
                yield update
        else:
            last: list[str] = []

            def update(job: dict) -> None:
                text = f"job {job_id}: {job.get('status')} {job_counts(job)}".rstrip()
                if not self.json_mode and last != [text]:
                    self.note(text)
                    last[:] = [text]
            yield update


def job_counts(job: dict) -> str:
    stats = job.get("deviceJobStatistics")
    if not stats:
        return ""
    return (f"{stats.get('succeededCount') or 0} succeeded, {stats.get('failedCount') or 0} failed, "
            f"{stats.get('runningCount') or 0} running, {stats.get('pendingCount') or 0} pending "
            f"of {stats.get('deviceCount') or 0}")


# -- renderers for each kind of result ---------------------------------------------------------------
def last_activity(value: Any) -> Any:
    """IoT Hub says "never" as 0001-01-01T00:00:00(.000)Z (DateTime.MinValue); text output says never."""
    return "never" if isinstance(value, str) and value.startswith("0001-01-01") else value


def show_twin(out: Output, twin: dict) -> None:
    props = twin.get("properties") or {}
    out.fields([("Device", twin.get("deviceId")), ("Status", twin.get("status")),
                ("Connection", twin.get("connectionState")),
                ("Last activity", last_activity(twin.get("lastActivityTime"))),
                ("Etag", twin.get("etag")), ("Version", twin.get("version"))])
    out.block("Tags", twin.get("tags") or {})
    out.block("Desired properties", without_metadata(props.get("desired")))
    out.block("Reported properties", without_metadata(props.get("reported")))


def show_device(out: Output, device: dict) -> None:
    """device: as returned by mask_device (keys already masked)."""
    auth = device.get("authentication") or {}
    keys = auth.get("symmetricKey") or {}
    out.fields([("Device", device.get("deviceId")), ("Status", device.get("status")),
                ("Connection", device.get("connectionState")),
                ("Last activity", last_activity(device.get("lastActivityTime"))),
                ("Authentication", auth.get("type")),
                ("Primary key", keys.get("primaryKey")), ("Secondary key", keys.get("secondaryKey")),
                ("Etag", device.get("etag"))])


def show_devices(out: Output, devices: list[dict]) -> None:
    if not devices:
        out.line("No devices.")
        return
    out.table(["deviceId", "status", "connectionState", "lastActivityTime"],
              [[d.get("deviceId"), d.get("status"), d.get("connectionState"),
                last_activity(d.get("lastActivityTime"))] for d in devices])


def show_method_result(out: Output, device_id: str, method: str, result: dict) -> None:
    out.line(f"Method {method} on {device_id}: status {result.get('status')}")
    out.block("Payload", result.get("payload"))


def show_job(out: Output, job: dict) -> None:
    method = job.get("cloudToDeviceMethod") or {}
    out.fields([("Job", job.get("jobId")), ("Type", job.get("type")),
                ("Method", method.get("methodName")), ("Status", job.get("status")),
                ("Query condition", job.get("queryCondition")), ("Start time", job.get("startTime")),
                ("End time", job.get("endTime")), ("Devices", job_counts(job) or None),
                ("Failure reason", job.get("failureReason")), ("Status message", job.get("statusMessage"))])


def show_jobs(out: Output, jobs: list[dict]) -> None:
    if not jobs:
        out.line("No jobs.")
        return
    out.table(["jobId", "type", "status", "startTime", "endTime", "devices"],
              [[j.get("jobId"), j.get("type"), j.get("status"), j.get("startTime"), j.get("endTime"),
                job_counts(j)] for j in jobs])


def device_job_outcome(item: dict) -> str:
    response = (item.get("outcome") or {}).get("deviceMethodResponse")
    if response:
        return f"method status {response.get('status')}: {compact(response.get('payload'), 40)}"
    error = item.get("error")
    if error:
        return f"{error.get('code')}: {error.get('description')}"
    return ""


def show_device_jobs(out: Output, items: list[dict]) -> None:
    if not items:
        out.line("No per-device results yet.")
        return
    out.table(["deviceId", "status", "outcome", "endTimeUtc"],
              [[i.get("deviceId"), i.get("status"), device_job_outcome(i), i.get("endTimeUtc")]
               for i in items])


def twin_row(twin: dict) -> dict:
    props = twin.get("properties") or {}
    return {"deviceId": twin.get("deviceId"), "status": twin.get("status"),
            "connectionState": twin.get("connectionState"), "lastActivityTime": twin.get("lastActivityTime"),
            "tags": twin.get("tags") or {},
            "desired": {k: v for k, v in without_metadata(props.get("desired")).items() if k != "$version"},
            "reported": {k: v for k, v in without_metadata(props.get("reported")).items() if k != "$version"}}


def show_query_items(out: Output, items: list[dict]) -> None:
    if not items:
        out.line("No results.")
        return
    if not all(isinstance(item, dict) for item in items):
        for item in items:
            out.line(compact(item, 200))
        return
    if all("properties" in item for item in items):
        items = [twin_row(item) for item in items]  # whole twins: the useful parts, not raw nesting
    columns = list(dict.fromkeys(key for item in items for key in item))
    out.table(columns, [[item.get(c) for c in columns] for item in items])
    out.line(f"{len(items)} item{'s' if len(items) != 1 else ''}")
