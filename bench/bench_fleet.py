"""5. `iothub-device --count N`: the fleet engine users get, side by side with the raw clients (the
engine's own lowest layer, bench/fleet.py) measured earlier in the same run.

The real program provisions N devices through the emulator's DPS group enrollment, as a user's would,
on an emulator of its own (bench.hub_host). Measured: start -> ready (the "press Ctrl-C" line),
devices/s, the fleet process's RSS (total, per device), then a lockDoor method job and a twin-update
job over all N (every device must succeed) and the rate of the fleet's reported acknowledgements,
each against the raw clients' rate (target: at least half)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from hubsettings import wellknown

from .bench_jobs import RAW_METHOD, run_job
from .context import BenchContext
from .hubs import RawServiceCaller, running_hub
from .processes import PROJECT_ROOT, ChildFailed, python_module, rss_bytes
from .report import Figure, Target

SECTION = "5 iothub-device fleet"
MIB = 1024 * 1024
READY_TARGET = Target("<=", 60.0, "s")
RSS_TARGET = Target("<=", 1024, "MiB")
PREFIX = "sim-"
CONDITION = f"STARTSWITH(deviceId, '{PREFIX}')"


class FleetProgram:
    """`python -m device --count N` with its output in a log file; stopped with SIGTERM (exit 0)."""

    def __init__(self, ctx: BenchContext, hub: Any, count: int):
        self.log_path = ctx.log_dir / "iothub-device-fleet.log"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("IOTHUB_", "PROVISIONING_")) and k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
        env.update(PYTHONUNBUFFERED="1", PROVISIONING_HOST=hub.host_name, PROVISIONING_IDSCOPE=wellknown.DPS_ID_SCOPE,
                   PROVISIONING_GROUP_KEY=wellknown.DPS_GROUP_KEY, IOTHUB_CA_FILE=hub.ca_file,
                   IOTHUB_EMULATOR_HOME=str(ctx.log_dir / "no-emulator-home"))
        self._log = open(self.log_path, "wb")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            python_module("device", "--count", str(count), "--device-id-prefix", PREFIX, "--no-telemetry"),
            cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def output(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> float:
        """Seconds since start when `text` appeared in the output."""
        deadline = time.perf_counter() + timeout
        while text not in self.output():
            if self.process.poll() is not None:
                raise ChildFailed(f"iothub-device exited with {self.process.returncode}: {self.output()[-500:]}")
            if time.perf_counter() > deadline:
                raise ChildFailed(f"iothub-device: no '{text}' within {timeout:.0f} s (log: {self.log_path})")
            time.sleep(0.1)
        return time.perf_counter() - self.started

    def stop(self) -> int | None:
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        finally:
            self._log.close()
        return self.process.returncode


def run(ctx: BenchContext, reference: dict[str, Any]) -> None:
    devices = ctx.sizes.capacity_devices
    ctx.budget.require(120, f"{SECTION} ({devices:,} devices)")
    with running_hub(ctx, "fleet-engine-hub", 0) as hub:
        ctx.progress(f"  iothub-device --count {devices:,} (provisioned through DPS)")
        fleet = FleetProgram(ctx, hub, devices)
        try:
            fleet.wait_for("Starting", 60)
            baseline = rss_bytes(fleet.process.pid)
            ready = fleet.wait_for("press Ctrl-C to stop", ctx.budget.cap(180))
            rss = rss_bytes(fleet.process.pid)
            _connect_figures(ctx, devices, ready, rss, baseline)
            _job_figures(ctx, hub, devices)
        finally:
            code = fleet.stop()
        summary = next((line for line in fleet.output().splitlines() if line.startswith("Summary:")), None)
        ctx.results.details["fleet_engine"] = {"exit_code": code, "summary": summary}
        if code != 0:
            ctx.results.note(f"iothub-device --count {devices:,} exited {code} on SIGTERM (log {fleet.log_path})")
        elif summary:
            ctx.results.note(f"iothub-device --count {devices:,}: {summary}")


def _connect_figures(ctx: BenchContext, devices: int, ready: float, rss: int | None, baseline: int | None) -> None:
    capacity = ctx.results.details.get("capacity") or {}
    raw_rate = capacity["connected"] / capacity["connect_seconds"] if capacity.get("connect_seconds") else None
    raw = ctx.results.details.get("raw_fleet") or {}
    raw_per_device = raw["rss_bytes"] / raw["devices"] / 1024 if raw.get("rss_bytes") and raw.get("devices") else None
    big = devices >= 10000
    ctx.results.add(Figure(SECTION, f"iothub-device --count {devices:,}: start -> ready", ready, "s",
                           target=READY_TARGET if big else None))
    _pair(ctx, "devices started/s (fleet: DPS + connect + subscribe + report + twin GET; raw clients: "
               "connect + subscribe)", devices / ready, raw_rate, "devices/s")
    ctx.results.add(Figure(SECTION, f"  fleet process RSS with {devices:,} devices", rss / MIB if rss else None,
                           "MiB", target=RSS_TARGET if big else None))
    per_device = (rss - (baseline or 0)) / devices / 1024 if rss else None
    _pair(ctx, "RSS per simulated device", per_device, raw_per_device, "KiB")
    ctx.results.details["fleet_engine_start"] = {"devices": devices, "ready_seconds": ready, "rss_bytes": rss,
                                                 "baseline_rss_bytes": baseline}


#: (job type, label, method, compared like for like with the raw clients). The raw clients answer any
#: method at once with nothing else to do; a method the listener does not know gets the same treatment
#: from the fleet (an immediate 404 answer), while lockDoor also reports the door's state.
JOBS = (("scheduleDeviceMethod", "method job, request/response only (unknown method: 404 answer)",
         ("benchPing", None), True),
        ("scheduleDeviceMethod", "lockDoor method job (answer + reported door state)",
         ("lockDoor", {"lockTime": "10m"}), False),
        ("scheduleUpdateTwin", "twin-update job", None, False))


def _pair(ctx: BenchContext, name: str, fleet: float | None, raw: float | None, unit: str,
          target: Target | None = None) -> None:
    """The fleet's figure, and the raw clients' (measured earlier in this run) on the row below."""
    ctx.results.add(Figure(SECTION, f"  {name}", fleet, unit, target=target))
    ctx.results.add(Figure(SECTION, "    the same, raw clients", raw, unit))


def _raw_outcome(ctx: BenchContext, job_type: str, devices: int) -> dict[str, Any] | None:
    for outcome in ctx.results.details.get("jobs") or []:
        if outcome["type"] == job_type and outcome["devices"] == devices:
            return outcome
    return None


def _job_figures(ctx: BenchContext, hub: Any, devices: int) -> None:
    caller = RawServiceCaller(hub, timeout=120)
    try:
        for job_type, label, method, like_for_like in JOBS:
            ctx.budget.require(20, f"{SECTION} {label}")
            limit = ctx.budget.cap(ctx.sizes.job_time_limit_s)
            ctx.progress(f"  {label} over the {devices:,} fleet devices (limit {limit:.0f} s)")
            outcome = run_job(caller, job_type, devices, limit, condition=CONDITION, method=method or RAW_METHOD)
            raw = _raw_outcome(ctx, job_type, devices)
            done = outcome["status"] == "completed" and outcome["succeeded"] == devices
            ops = outcome["succeeded"] / outcome["wall_seconds"] if outcome["wall_seconds"] else None
            raw_ops = raw["succeeded"] / raw["wall_seconds"] if raw and raw["wall_seconds"] else None
            _pair(ctx, f"{label}, {devices:,} devices: start -> completed", outcome["wall_seconds"] if done else None,
                  raw["wall_seconds"] if raw else None, "s")
            is_method = job_type == "scheduleDeviceMethod"
            _pair(ctx, f"{label}: " + ("method answers/s" if is_method else "desired updates/s"), ops, raw_ops, "ops/s",
                  target=Target(">=", round(raw_ops / 2), "ops/s") if raw_ops and like_for_like else None)
            if not done:
                ctx.results.note(f"{label} over {devices:,} fleet devices: {outcome['status']}, "
                                 f"{outcome['succeeded']:,} succeeded, {outcome['failed']:,} failed"
                                 + (f": {outcome['failure_reason']}" if outcome.get("failure_reason") else ""))
            if not is_method:
                acks = _wait_for_acks(caller, outcome, devices, limit)
                raw_acks = raw.get("acks_seconds") if raw else None
                _pair(ctx, "reported acknowledgements/s (every device's reported patch)",
                      devices / acks if acks else None, devices / raw_acks if raw_acks else None, "patches/s",
                      target=Target(">=", round(devices / raw_acks / 2), "patches/s") if raw_acks else None)
    finally:
        caller.close()


def _wait_for_acks(caller: RawServiceCaller, outcome: dict[str, Any], devices: int, limit: float) -> float | None:
    """Seconds from the job's start until every fleet device reported its acknowledgement (a twin
    query counts them); None if not within `limit`."""
    run_id = outcome["desired"]["bench"]["run"]
    query = (f"SELECT COUNT() AS n FROM devices WHERE {CONDITION} AND "
             f"properties.reported.bench.value.run = '{run_id}' AND properties.reported.bench.ac = 200")
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        status, rows = caller.request("POST", "/devices/query", {"query": query})
        if status == 200 and rows and rows[0].get("n", 0) >= devices:
            return time.perf_counter() - outcome["started"]
        time.sleep(0.25)
    return None
