"""Run one device or a fleet in one event loop until Ctrl-C/SIGTERM; a fleet starts whole or not at all."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from hubsettings import DeviceSettings, SettingsError

from .app import DeviceAgent, RunOptions, Sleep
from .errors import DeviceError, SettingsProblem
from .eventlog import EventLog, utc_now
from .sdk import ClientFactory, describe_error


def load_ca(settings: DeviceSettings) -> str | None:
    """The CA PEM to trust, or None for the system trust store.

    The emulator writes its CA on first start; when it has never run there is none yet, and the
    connection is tried anyway so that the failure says how to start the emulator.
    """
    try:
        return settings.ca_pem()
    except SettingsError as e:
        if settings.is_emulator and not settings.emulator_running:
            return None
        raise SettingsProblem(str(e)) from None


async def run_devices(devices: Iterable[DeviceSettings], options: RunOptions, factory: ClientFactory,
                      log: EventLog, stop: asyncio.Event, *, sleep: Sleep = asyncio.sleep,
                      clock: Callable[[], float] = time.monotonic,
                      now: Callable[[], datetime] = utc_now,
                      started: Callable[[list[DeviceAgent]], None] | None = None) -> int:
    """Start every device, serve until `stop` is set, shut everything down; return the exit code.

    A fleet starts whole or not at all: if one device cannot start, the others are shut down and
    that device's error is raised (a DeviceError with its exit code).
    """
    agents = [DeviceAgent(s, options, factory, log, ca_pem=load_ca(s), sleep=sleep, clock=clock, now=now)
              for s in devices]
    starts = {asyncio.create_task(agent.start()): agent for agent in agents}
    stop_wait = asyncio.create_task(stop.wait())
    failure: BaseException | None = None
    try:
        pending = set(starts)
        while pending and not stop.is_set():
            done, pending = await asyncio.wait(pending | {stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            pending.discard(stop_wait)
            failed = [t for t in done if t is not stop_wait and t.exception() is not None]
            if failed:
                failure = failed[0].exception()
                agent = starts[failed[0]]
                if not isinstance(failure, DeviceError):
                    agent.say(f"start failed: {describe_error(failure)}")
                elif len(agents) > 1:  # say which device of the fleet failed
                    failure = type(failure)(f"{agent.device_id}: {failure}")
                break
        for task in starts:
            task.cancel()
        await asyncio.gather(*starts, return_exceptions=True)
        if failure is None and not stop.is_set():
            if started is not None:
                started(agents)
            if len(agents) > 1:
                log.info(f"{len(agents)} devices running; press Ctrl-C to stop")
            else:
                log.info("Running; press Ctrl-C to stop")
            await stop_wait
    finally:
        stop_wait.cancel()
        if failure is None:
            log.info(f"Stopping: disconnecting {len(agents)} device{'s' if len(agents) != 1 else ''}")
        await asyncio.gather(*(agent.stop() for agent in agents), return_exceptions=True)
    if failure is not None:
        raise failure
    log.info("Stopped")
    return 0


def install_stop_signals(stop: asyncio.Event) -> Callable[[], None]:
    """Ctrl-C and SIGTERM set `stop` (a clean shutdown); returns a function that undoes this."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass

    def remove() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)
    return remove
