"""4. CLI cost: wall time of `iothub-service --help` and of a whole `iothub-service method invoke`
process against the emulator (a pure-Python timer loop; nothing to install)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .context import BenchContext
from .hubs import HubInfo
from .processes import PROJECT_ROOT
from .report import Figure, Target
from .stats import median

SECTION = "4 CLI"
HELP_TARGET = Target("<=", 0.3, "s")
RUN_TIMEOUT = 60.0


def service_cli() -> list[str]:
    """The installed console script next to this Python, else `python -m service`."""
    script = Path(sys.executable).parent / "iothub-service"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "service"]


def time_process(argv: list[str], env: dict[str, str], runs: int) -> tuple[list[float], int]:
    """Wall seconds of `runs` runs of a whole process; returns (timings, last exit code)."""
    timings, code = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=RUN_TIMEOUT)
        timings.append(time.perf_counter() - started)
        code = done.returncode
        if code != 0:
            raise RuntimeError(f"{' '.join(argv[-3:])} exited with {code}: "
                               f"{done.stderr.decode(errors='replace').strip()[-200:]}")
    return timings, code


def run(ctx: BenchContext, hub: HubInfo, device: str) -> None:
    sizes = ctx.sizes
    ctx.budget.require(15, SECTION)
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
    env.update({"IOTHUB_CONNECTION_STRING": hub.service_connection_string, "IOTHUB_CA_FILE": hub.ca_file})
    cli = service_cli()
    ctx.progress(f"  {' '.join(Path(a).name for a in cli)} --help x{sizes.cli_help_runs}")
    time_process([*cli, "--help"], env, 1)  # warm the file cache; not counted
    help_times, _ = time_process([*cli, "--help"], env, sizes.cli_help_runs)
    ctx.progress(f"  method invoke x{sizes.cli_invoke_runs}")
    invoke_times, _ = time_process([*cli, "method", "invoke", device, "lockDoor", "--json"], env,
                                   sizes.cli_invoke_runs)
    ctx.results.add(Figure(SECTION, f"iothub-service --help (median of {len(help_times)})", median(help_times), "s",
                           target=HELP_TARGET))
    ctx.results.add(Figure(SECTION, f"iothub-service method invoke, whole process (median of {len(invoke_times)})",
                           median(invoke_times), "s"))
    ctx.results.details["cli"] = {"help_seconds": help_times, "invoke_seconds": invoke_times}
