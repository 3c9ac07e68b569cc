"""`iothub-device --count N` / `--connection-strings-file F`: the fleet engine wired up in one process."""

from __future__ import annotations

import asyncio
import resource
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hubsettings import DeviceSettings, is_loopback_host, split_host_port

from ..app import RunOptions
from ..errors import EXIT_INTERRUPTED, EXIT_OK, SettingsProblem
from ..eventlog import EventLog
from ..runner import install_stop_signals
from .factory import FleetClientFactory
from .link import FleetLink
from .mqtt import shrink_tls_read_buffers
from .pacing import Gate
from .runner import Fleet, FleetOptions, QuietEventLog

#: Beyond the devices' own sockets: DPS connections in flight, the CA file, stdio, the event loop.
SPARE_FILES = 64
#: IoT Hub S1/S2 accept about 100 new device connections per second per unit; DPS about 200
#: registrations per minute per unit. Against Azure the fleet keeps under those unless told otherwise.
AZURE_CONNECT_RATE = 100.0
AZURE_REGISTRATION_RATE = 3.0


@dataclass(frozen=True)
class Pace:
    concurrency: int = 100
    connect_rate: float | None = None  # None: unlimited on the emulator, AZURE_CONNECT_RATE elsewhere
    registration_rate: float | None = None  # None: unlimited on the emulator, AZURE_REGISTRATION_RATE elsewhere

    def for_devices(self, devices: Sequence[DeviceSettings]) -> tuple[float | None, float | None]:
        local = all(_is_local(d) for d in devices[:1])
        connect = self.connect_rate or (None if local else AZURE_CONNECT_RATE)
        register = self.registration_rate or (None if local else AZURE_REGISTRATION_RATE)
        return connect, register


def _is_local(settings: DeviceSettings) -> bool:
    """The local emulator (found, or on a loopback address): no hub quotas to respect."""
    if settings.is_emulator:
        return True
    host = settings.connection_string.host if settings.connection_string else \
        split_host_port(settings.provisioning.host)[0] if settings.provisioning else ""
    return is_loopback_host(host)


def ensure_open_files(devices: int, concurrency: int) -> int:
    """Raise the soft open-files limit to what the fleet needs (one socket per device, plus DPS
    connections in flight); SettingsProblem when the hard limit is too low."""
    wanted = devices + concurrency + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        raise SettingsProblem(f"{devices:,} devices need about {wanted:,} open files, but this process may "
                              f"open at most {hard:,} (ulimit -Hn): run fewer devices per process")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


async def serve_fleet(devices: Sequence[DeviceSettings], options: RunOptions, fleet: FleetOptions, pace: Pace,
                      deps: Mapping[str, Any], log: EventLog, json_lines: bool) -> int:
    """Run the fleet until Ctrl-C (exit 130), SIGTERM (0) or a failure (raised DeviceError)."""
    ensure_open_files(len(devices), pace.concurrency)
    connect_rate, registration_rate = pace.for_devices(devices)
    link = FleetLink(hub_gate=Gate(pace.concurrency, connect_rate), dps_gate=Gate(pace.concurrency, registration_rate))
    factory = deps.get("factory")
    if factory is None:
        shrink_tls_read_buffers()
        factory = FleetClientFactory(link)
    stop: asyncio.Event = deps.get("stop") or asyncio.Event()
    received: list[int] = []
    remove_signals = install_stop_signals(stop, received)
    live = sys.stderr if (not fleet.device_events and not json_lines and sys.stderr.isatty()) else None
    device_log = log if fleet.device_events else QuietEventLog()
    try:
        runner = Fleet(devices, options, fleet, factory, log, device_log, stop, stats=link.stats, live=live,
                       **{k: deps[k] for k in ("sleep", "clock", "now", "started") if k in deps})
        if len(devices) > 1 or not fleet.device_events:
            log.info(f"Starting {len(devices):,} devices, {pace.concurrency} at a time"
                     + (f", at most {connect_rate:g} connections/s" if connect_rate else "")
                     + (f", {registration_rate:g} DPS registrations/s" if registration_rate else ""))
        code = await runner.run()
    finally:
        remove_signals()
    return EXIT_INTERRUPTED if signal.SIGINT in received else code if code else EXIT_OK
