"""`python -m bench`: every benchmark in one bounded run, side by side with mosquitto.

Order: the mosquitto reference (so every figure can carry its ratio), the round trips and the CLI on a
small emulator, then one emulator with the big fleet connected: capacity, jobs, sustained throughput;
last, one emulator with 100,000 registered devices on SQLite: queries and event-loop stalls.
Each part is bounded in count and time and shares one global budget; a part that fails or runs out of
budget is reported in the notes and the rest still run. Every process started is stopped on the way out.

Exit codes: 0 all parts ran; 1 a part failed or was skipped (results are still written); 2 bad options;
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import (bench_capacity, bench_cli, bench_client_choice, bench_fleet, bench_jobs, bench_queries, bench_roundtrip,
               bench_telemetry, machine, mosquitto_ref)
from .context import BenchContext, Budget, BudgetExhausted, Sizes
from .hubs import running_fleets, running_hub
from .processes import raise_fd_limit, rss_bytes
from .report import Results, text_table, write_results

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_BUDGET_S = 600.0
QUICK_BUDGET_S = 240.0
PARTS = ("mosquitto", "roundtrip", "cli", "fleet", "queries", "telemetry")
EXIT_PARTIAL, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
#: How every emulator and device of the run was set up: printed above the table.
SETUP = (
    "Emulator as shipped: every emulator of the run (bench/hub_host.py) persists to SQLite in a fresh temporary "
    "data directory (not --in-memory), binds the emulator's own ports (MQTT/TLS 8883; HTTPS 443, or its fallback "
    "9443 where 443 may not be bound) on a fresh 127.0.0.X and runs in a process of its own; bench devices are "
    "registered in bulk with one bench-only key.",
    "Devices: sections 1-3 use the bench's raw MQTT client (bench/fleet.py: one shared key, a canned answer, no "
    "SDK; 5,000 devices per process); section 1 also the azure-iot-device SDK (bench/sdk_device.py); section 5 "
    "is the product's own `iothub-device --count N` (each device provisioned through DPS); section 6 names its "
    "clients.",
    "References: mosquitto (persistence off, TLS with a certificate from the emulator's generator) with the same "
    "raw client program on plain topics, QoS 1 both ways; for the HTTPS-driven rows, the same HTTPS callers "
    "against an aiohttp bridge to that mosquitto (bench/reference_bridge.py). Section 0 lists the references' "
    "own figures; every ratio names its reference in brackets.",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                     epilog="Exit codes: 0 all parts ran; 1 some part failed or was skipped "
                                            "(results still written); 2 bad options; 130 interrupted.")
    parser.add_argument("--quick", action="store_true", help="smaller counts (200 calls, 1,000 devices)")
    parser.add_argument("--budget", type=float, default=None,
                        help=f"global time budget in seconds (default {DEFAULT_BUDGET_S:.0f}, quick "
                             f"{QUICK_BUDGET_S:.0f})")
    parser.add_argument("--only", action="append", choices=PARTS, help="run only these parts (repeatable)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.budget is not None and args.budget <= 0:
        parser.error("--budget must be positive")
    return args


def _part(ctx: BenchContext, name: str, failures: list[str], function: Any, *args: Any) -> Any:
    """Run one part; a failure or an exhausted budget becomes a note, never a traceback."""
    ctx.progress(f"[{name}] ({ctx.budget.remaining():.0f} s of budget left)")
    try:
        return function(ctx, *args)
    except BudgetExhausted as e:
        ctx.results.note(str(e))
        failures.append(name)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - reported in one line; details in the log directory
        ctx.results.note(f"{name} failed: {type(e).__name__}: {e}")
        (ctx.log_dir / f"{name}-traceback.txt").write_text(traceback.format_exc())
        failures.append(name)
    return None


def _fleet_stage(ctx: BenchContext, reference: dict[str, Any], failures: list[str]) -> None:
    sizes = ctx.sizes
    devices = max(sizes.capacity_devices, *sizes.fanout_devices)
    ctx.budget.require(60, "fleet stage (capacity, jobs, sustained)")
    ctx.progress(f"  registering {devices:,} devices in a fresh emulator")
    with running_hub(ctx, "fleet-hub", devices) as hub:
        time.sleep(1.0)  # let the registration's garbage settle before the baseline RSS
        registered_rss = rss_bytes(hub.pid)
        ctx.progress(f"  connecting {devices:,} raw MQTT devices")
        with running_fleets(ctx, hub, devices, ctx.budget.cap(300)) as fleets:
            connect_seconds = max(report["seconds"] for _, report in fleets)
            _part(ctx, "capacity", failures, bench_capacity.record_connections, hub, registered_rss, devices,
                  connect_seconds, reference)
            _part(ctx, "jobs", failures, bench_jobs.run, hub, fleets, reference)
            _part(ctx, "sustained", failures, bench_capacity.run_sustained, hub, devices, reference)
    _part(ctx, "jobs-in-memory", failures, _in_memory_jobs, reference)
    _part(ctx, "fd-limit", failures, bench_capacity.run_fd_limit)
    # The fleet users get (iothub-device --count), after the raw clients so that it meets an idle machine.
    _part(ctx, "fleet-engine", failures, bench_fleet.run, reference)
    _part(ctx, "client-choice", failures, bench_client_choice.run, reference)


def _in_memory_jobs(ctx: BenchContext, reference: dict[str, Any]) -> None:
    """The largest method and twin jobs again on an emulator started in memory, labelled so: what the
    SQLite store costs them, beside the as-shipped rows."""
    devices = max(ctx.sizes.fanout_devices)
    ctx.budget.require(60, "in-memory jobs")
    ctx.progress(f"  in memory (labelled rows): {devices:,} devices, method and twin jobs")
    with running_hub(ctx, "in-memory-hub", devices, in_memory=True) as hub, \
            running_fleets(ctx, hub, devices, ctx.budget.cap(300)) as fleets:
        bench_jobs.run(ctx, hub, fleets, reference, sizes=(devices,), in_memory=True)


def _small_stage(ctx: BenchContext, parts: set[str], reference: dict[str, Any], failures: list[str]) -> None:
    if "roundtrip" in parts:
        _part(ctx, "roundtrip", failures, bench_roundtrip.run, reference)
    if "cli" in parts:
        def cli(context: BenchContext) -> None:
            with running_hub(context, "cli-hub", devices=1) as hub, running_fleets(context, hub, 1, 60):
                bench_cli.run(context, hub, "dev-00000")
        _part(ctx, "cli", failures, cli)


def _interrupt(signum: int, frame: object) -> None:
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # no task tracebacks on the way out
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    budget = Budget(args.budget or (QUICK_BUDGET_S if args.quick else DEFAULT_BUDGET_S))
    parts = set(args.only or PARTS)
    # Each fleet process holds half the devices; the emulator and mosquitto hold them all.
    raise_fd_limit(max(sizes.capacity_devices, *sizes.fanout_devices) * 2 + 1024)
    results = Results(machine=machine.describe(), mode="quick" if args.quick else "full",
                      started_utc=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    log_dir = Path(tempfile.mkdtemp(prefix="iothub-bench-"))
    results.setup.extend(SETUP)
    ctx = BenchContext(results, budget, sizes, log_dir, progress=lambda text: print(text, flush=True))
    # Ctrl-C and SIGTERM take one way out: KeyboardInterrupt, so the `with` blocks stop every child.
    # (A handler of our own also keeps asyncio.run() from turning Ctrl-C into a task cancellation that
    # a benchmark loop could swallow.)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    failures: list[str] = []
    print(f"bench: {results.mode} run, budget {budget.total_seconds:.0f} s, logs in {log_dir}", flush=True)
    interrupted = False
    try:
        reference: dict[str, Any] = {}
        if "mosquitto" in parts:
            reference = _part(ctx, "mosquitto", failures, mosquitto_ref.run) or {}
        _small_stage(ctx, parts, reference, failures)
        if "fleet" in parts:
            _part(ctx, "fleet", failures, _fleet_stage, reference, failures)
        if "queries" in parts:
            _part(ctx, "queries", failures, bench_queries.run)
        if "telemetry" in parts:
            _part(ctx, "telemetry", failures, bench_telemetry.run)
    except KeyboardInterrupt:
        interrupted = True
        results.note("interrupted: the figures above are from the parts that finished")
    results.duration_s = time.monotonic() - started
    results.machine["load_average_end"] = machine.load_average()  # other work on the machine moves the figures
    json_path, md_path = write_results(results, args.results_dir)
    print()
    print(text_table(results.figures))
    for note in results.notes:
        print(f"- {note}")
    print(f"\nwrote {json_path} and {md_path}")
    if failures or interrupted:
        print(f"logs of the processes the bench started: {log_dir}")
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL if failures else 0
