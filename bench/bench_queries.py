"""7. Queries and event-loop stalls at scale: one emulator with N registered devices (100,000 in a full
run), persisted to SQLite as the emulator ships, none connected.

- registration: N devices through the hub's bulk registration (1,000 per store transaction);
- the first query after registration (it builds every device's read-only twin document);
- a selective query (`WHERE tags.index = k`, k random) and a deviceId lookup: p50 over repeated calls;
- `SELECT *` paged 1,000 items per request over the whole fleet: time per page;
- the longest event-loop stall in the emulator (stall_meter.py) during a full query (a range condition
  no index answers, all rows) and during a method job over 10,000 devices (its start: device selection
  and saving 10,000 rows; none are connected, so every call fails at once and the job ends quickly).
"""

from __future__ import annotations

import http.client
import json
import random
import ssl
import time
from typing import Any

from hubsettings import build_token, wellknown

from .context import BenchContext
from .hubs import API_VERSION, HubInfo, running_hub
from .report import Figure, Target
from .stats import summarize

SECTION = "7 queries"
SELECTIVE_TARGET = Target("<=", 20.0, "ms")
PAGE_TARGET = Target("<=", 50.0, "ms")
STALL_TARGET = Target("<=", 50.0, "ms")
PAGE_SIZE = 1000
JOB_DEVICES = 10_000


class QueryCaller:
    """POST /devices/query over one kept-alive HTTPS connection, with paging headers."""

    def __init__(self, hub: HubInfo, timeout: float = 120.0):
        self._connection = http.client.HTTPSConnection(
            hub.address, hub.rest_port, context=ssl.create_default_context(cafile=hub.ca_file), timeout=timeout)
        key = wellknown.POLICIES[wellknown.OWNER_POLICY][0]
        self._token = build_token(f"{hub.host_name}:{hub.rest_port}", key, policy=wellknown.OWNER_POLICY,
                                  ttl=6 * 3600)

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any, http.client.HTTPMessage]:
        all_headers = {"Authorization": self._token, "Content-Type": "application/json", **(headers or {})}
        separator = "&" if "?" in path else "?"
        self._connection.request(method, f"{path}{separator}api-version={API_VERSION}",
                                 None if body is None else json.dumps(body), all_headers)
        response = self._connection.getresponse()
        payload = response.read()
        return response.status, json.loads(payload) if payload else None, response.headers

    def query(self, text: str, page_size: int = 100, continuation: str | None = None) -> tuple[list, str | None]:
        headers = {"x-ms-max-item-count": str(page_size)}
        if continuation:
            headers["x-ms-continuation"] = continuation
        status, rows, response_headers = self.request("POST", "/devices/query", {"query": text}, headers)
        if status != 200:
            raise RuntimeError(f"query {text!r} answered HTTP {status}: {str(rows)[:200]}")
        return rows, response_headers.get("x-ms-continuation")

    def close(self) -> None:
        self._connection.close()


def _timed(function: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def _stall(hub: HubInfo) -> dict[str, Any]:
    hub.child.send("stall")
    return hub.child.expect("stall", 30)


def _reset_stall(hub: HubInfo) -> None:
    hub.child.send("stall-reset")


def _selective(ctx: BenchContext, caller: QueryCaller, devices: int, rounds: int) -> dict[str, Any]:
    picks = random.Random(7)
    by_tag, by_id = [], []
    for _ in range(rounds):
        index = picks.randrange(devices)
        seconds, (rows, _) = _timed(caller.query, f"SELECT * FROM devices WHERE tags.index = {index}")
        if len(rows) != 1:
            raise RuntimeError(f"tags.index = {index} matched {len(rows)} devices, not 1")
        by_tag.append(seconds)
        seconds, (rows, _) = _timed(caller.query, f"SELECT * FROM devices WHERE deviceId = '{rows[0]['deviceId']}'")
        by_id.append(seconds)
    return {"by_tag": summarize(by_tag).to_json(), "by_device_id": summarize(by_id).to_json()}


def _pages(caller: QueryCaller) -> dict[str, Any]:
    """Every page of SELECT * (PAGE_SIZE items each); the first one runs the query."""
    samples, items, continuation = [], 0, None
    while True:
        seconds, (rows, continuation) = _timed(caller.query, "SELECT * FROM devices", PAGE_SIZE, continuation)
        samples.append(seconds)
        items += len(rows)
        if not continuation:
            break
    return {"pages": len(samples), "items": items, "first_page_ms": samples[0] * 1000.0,
            "per_page": summarize(samples).to_json()}


def _full_query_stall(hub: HubInfo, caller: QueryCaller) -> dict[str, Any]:
    _reset_stall(hub)
    seconds, (rows, _) = _timed(caller.query, "SELECT * FROM devices WHERE tags.index >= 0", PAGE_SIZE)
    return {"seconds": seconds, "first_page_items": len(rows), **_stall(hub)}


def _job_stall(hub: HubInfo, caller: QueryCaller, devices: int, time_limit: float) -> dict[str, Any]:
    count = min(JOB_DEVICES, devices)
    job_id = f"bench-stall-{int(time.time())}"
    body = {"jobId": job_id, "type": "scheduleDeviceMethod", "queryCondition": f"tags.index < {count}",
            "cloudToDeviceMethod": {"methodName": "lockDoor", "responseTimeoutInSeconds": 5,
                                    "connectTimeoutInSeconds": 0},
            "maxExecutionTimeInSeconds": int(time_limit) + 60}
    _reset_stall(hub)
    started = time.perf_counter()
    status, job, _ = caller.request("PUT", f"/jobs/v2/{job_id}", body)
    if status != 200:
        raise RuntimeError(f"creating the job answered HTTP {status}: {str(job)[:200]}")
    while job.get("status") not in ("completed", "failed", "cancelled"):
        if time.perf_counter() - started > time_limit:
            raise RuntimeError(f"the {count:,}-device job did not finish within {time_limit:.0f} s")
        time.sleep(0.1)
        _, job, _ = caller.request("GET", f"/jobs/v2/{job_id}")
    return {"devices": job["deviceJobStatistics"]["deviceCount"], "status": job["status"],
            "seconds": time.perf_counter() - started, **_stall(hub)}


def run(ctx: BenchContext) -> None:
    devices = ctx.sizes.query_devices
    ctx.budget.require(60, f"{SECTION} ({devices:,} devices)")
    ctx.progress(f"  registering {devices:,} devices (SQLite) in a fresh emulator")
    with running_hub(ctx, "query-hub", devices) as hub:
        add = ctx.results.add
        add(Figure(SECTION, f"register {devices:,} devices (bulk, SQLite)", hub.register_seconds, "s",
                   note=f"{devices / hub.register_seconds:,.0f} devices/s"))
        caller = QueryCaller(hub)
        try:
            first, _ = _timed(caller.query, "SELECT * FROM devices WHERE tags.index = 0")
            add(Figure(SECTION, "first query after registering (builds the documents)", first * 1000.0, "ms"))
            rounds = ctx.sizes.query_rounds
            ctx.progress(f"  selective queries x{rounds}")
            selective = _selective(ctx, caller, devices, rounds)
            ctx.results.details["selective_queries"] = selective
            add(Figure(SECTION, f"selective query p50 (tags.index = k, {devices:,} devices)",
                       selective["by_tag"]["p50_ms"], "ms", target=SELECTIVE_TARGET))
            add(Figure(SECTION, "  deviceId lookup p50", selective["by_device_id"]["p50_ms"], "ms",
                       target=SELECTIVE_TARGET))
            ctx.progress(f"  SELECT * in pages of {PAGE_SIZE:,}")
            pages = _pages(caller)
            ctx.results.details["select_all_pages"] = pages
            add(Figure(SECTION, f"SELECT * per {PAGE_SIZE:,}-item page, p50 ({pages['pages']} pages)",
                       pages["per_page"]["p50_ms"], "ms", target=PAGE_TARGET))
            add(Figure(SECTION, "  first page (runs the query)", pages["first_page_ms"], "ms", target=PAGE_TARGET))
            ctx.progress("  event-loop stall during a full query")
            full = _full_query_stall(hub, caller)
            ctx.results.details["full_query_stall"] = full
            add(Figure(SECTION, "longest loop stall during a full query", full["max_stall_ms"], "ms",
                       target=STALL_TARGET, note=f"longest GC pause {full['max_gc_pause_ms']:.1f} ms"))
            add(Figure(SECTION, "  of it the loop's own CPU", full["max_cpu_stall_ms"], "ms", target=STALL_TARGET))
            add(Figure(SECTION, "  longest garbage-collector pause in it", full["max_gc_pause_ms"], "ms"))
            ctx.progress(f"  event-loop stall during a {min(JOB_DEVICES, devices):,}-device job")
            job = _job_stall(hub, caller, devices, ctx.budget.cap(120))
            ctx.results.details["job_start_stall"] = job
            add(Figure(SECTION, f"longest loop stall during a {job['devices']:,}-device job", job["max_stall_ms"],
                       "ms", target=STALL_TARGET, note=f"longest GC pause {job['max_gc_pause_ms']:.1f} ms"))
            add(Figure(SECTION, "  of it the loop's own CPU", job["max_cpu_stall_ms"], "ms", target=STALL_TARGET))
            add(Figure(SECTION, "  longest garbage-collector pause in it", job["max_gc_pause_ms"], "ms"))
        finally:
            caller.close()
