"""6. Why the fleet engine speaks MQTT through the project's own codec: the same raw bench devices on
the codec (bench/fleet.py, the engine's lowest layer) and on paho-mqtt 1.6 (bench/paho_fleet.py, the
library azure-iot-device uses; paho-mqtt 2 and aiomqtt cannot be installed next to the SDK), one
process each, one asyncio loop each, against the same emulator: connect rate, RSS per device and
method answers/s in a job over all of them."""

from __future__ import annotations

from typing import Any

from .bench_jobs import run_job
from .context import BenchContext
from .hub_host import BENCH_DEVICE_KEY
from .hubs import RawServiceCaller, running_hub
from .processes import Child, python_module, rss_bytes
from .report import Figure

SECTION = "6 MQTT client choice"
MAX_DEVICES = 2000  # paho 1.6 shakes hands synchronously: enough devices to compare, not to wait on
CLIENTS = (("project codec (bench.fleet)", "bench.fleet", ("--mode", "hub")),
           ("paho-mqtt 1.6 (bench.paho_fleet)", "bench.paho_fleet", ()))


def run(ctx: BenchContext, reference: dict[str, Any]) -> None:
    devices = min(MAX_DEVICES, ctx.sizes.capacity_devices)
    ctx.budget.require(60, SECTION)
    with running_hub(ctx, "client-choice-hub", devices) as hub:
        caller = RawServiceCaller(hub, timeout=120)
        try:
            for label, module, extra in CLIENTS:
                ctx.budget.require(30, f"{SECTION}: {label}")
                ctx.progress(f"  {devices:,} devices on {label}")
                argv = python_module(module, *extra, "--host", hub.address, "--port", str(hub.mqtt_port),
                                     "--ca", hub.ca_file, "--hub-host-name", hub.host_name, "--key", BENCH_DEVICE_KEY,
                                     "--count", str(devices))
                with Child(module.replace(".", "-"), argv, ctx.log_dir) as child:
                    connected = child.expect("connected", ctx.budget.cap(180))
                    rss = rss_bytes(child.pid)
                    job = run_job(caller, "scheduleDeviceMethod", devices, ctx.budget.cap(60))
                _figures(ctx, label, devices, connected, rss, job)
        finally:
            caller.close()


def _figures(ctx: BenchContext, label: str, devices: int, connected: dict[str, Any], rss: int | None,
             job: dict[str, Any]) -> None:
    ok = connected["connected"]
    ctx.results.add(Figure(SECTION, f"{label}: connect {devices:,} devices (TLS + CONNECT)",
                           ok / connected["seconds"] if connected["seconds"] else None, "conn/s"))
    before = connected.get("rss_before_bytes") or 0
    ctx.results.add(Figure(SECTION, f"{label}: RSS per device (growth while connecting)",
                           (rss - before) / ok / 1024 if rss and ok else None, "KiB"))
    done = job["status"] == "completed" and job["succeeded"] == devices
    ctx.results.add(Figure(SECTION, f"{label}: method job, answers/s",
                           job["succeeded"] / job["wall_seconds"] if done and job["wall_seconds"] else None, "ops/s"))
    if connected["failed"] or not done:
        ctx.results.note(f"{label}: {connected['failed']} devices failed to connect "
                         f"({connected.get('first_error')}); method job {job['status']} with "
                         f"{job['succeeded']:,} of {devices:,} succeeded")
