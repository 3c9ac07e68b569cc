"""Run one device or a fleet in one event loop until Ctrl-C/SIGTERM; a fleet starts whole or not at all,
and stops by itself (exit code 4) once the hub has refused the credentials of every device."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from hubsettings import DeviceSettings, SettingsError

from .app import DeviceAgent, RunOptions, Sleep
from .errors import AuthenticationRefused, DeviceError, SettingsProblem
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

    Once running, a device whose credentials the hub refuses on a reconnect (deleted, disabled,
    re-keyed) is stopped alone: the SDK never reconnects after that. When no device is left running,
    AuthenticationRefused is raised (exit code 4); Ctrl-C/SIGTERM before that is a clean stop (0).
    """
    agents = [DeviceAgent(s, options, factory, log, ca_pem=load_ca(s), sleep=sleep, clock=clock, now=now)
              for s in devices]
    starts = {asyncio.create_task(agent.start()): agent for agent in agents}
    refusals = {asyncio.create_task(agent.credentials_refused.wait()): agent for agent in agents}
    stop_wait = asyncio.create_task(stop.wait())
    failure: BaseException | None = None
    try:
        pending = set(starts)
        while pending and not stop.is_set():
            done, _ = await asyncio.wait(pending | set(refusals) | {stop_wait},
                                         return_when=asyncio.FIRST_COMPLETED)
            pending = {t for t in pending if not t.done()}
            refused = [t for t in done if t in refusals]
            failed = [t for t in done if t in starts and t.exception() is not None]
            if refused:  # refused before the whole fleet was up: a failed start
                agent = refusals[refused[0]]
                failure = AuthenticationRefused(_in_fleet(agents, agent, agent.refusal_message()))
                break
            if failed:
                failure = failed[0].exception()
                agent = starts[failed[0]]
                if not isinstance(failure, DeviceError):
                    agent.say(f"start failed: {describe_error(failure)}")
                elif len(agents) > 1:  # say which device of the fleet failed
                    failure = type(failure)(_in_fleet(agents, agent, str(failure)))
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
            failure = await _serve(agents, refusals, stop_wait, log)
    finally:
        stop_wait.cancel()
        for task in refusals:
            task.cancel()
        if failure is None:
            left = sum(1 for agent in agents if not agent.stopped)
            log.info(f"Stopping: disconnecting {left} device{'s' if left != 1 else ''}")
        await asyncio.gather(*(agent.stop() for agent in agents), return_exceptions=True)
    if failure is not None:
        raise failure
    refused = [agent.device_id for agent in agents if agent.credentials_refused.is_set()]
    if refused:  # a fleet stopped by Ctrl-C/SIGTERM after some of its devices were refused
        shown = ", ".join(refused[:5]) + (f" and {len(refused) - 5} more" if len(refused) > 5 else "")
        log.info(f"Stopped ({len(refused)} of {len(agents)} devices had stopped earlier, their credentials "
                 f"refused: {shown})")
    else:
        log.info("Stopped")
    return 0


async def _serve(agents: list[DeviceAgent], refusals: dict[asyncio.Task, DeviceAgent],
                 stop_wait: asyncio.Task, log: EventLog) -> AuthenticationRefused | None:
    """Serve until stopped (None), or until the hub has refused the credentials of every device
    (AuthenticationRefused). A refused device is stopped at once; the others keep running."""
    running = dict(refusals)
    last: DeviceAgent | None = None
    while running:
        done, _ = await asyncio.wait(set(running) | {stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if stop_wait in done:
            return None
        for task in done:
            last = running.pop(task)
            await last.stop()
            if running:
                log.info(f"{last.device_id} stopped (credentials refused); "
                         f"{len(running)} of {len(agents)} devices still running")
    assert last is not None
    return all_refused_error(agents, last)


def all_refused_error(agents: list[DeviceAgent], last: DeviceAgent) -> AuthenticationRefused:
    """The final error once the hub has refused every device of a fleet (`last` the last one)."""
    if len(agents) == 1:
        return AuthenticationRefused(last.refusal_message())
    return AuthenticationRefused(
        f"all {len(agents)} devices stopped: IoT hub {last.host_name} refused their credentials on a "
        f"reconnect (the last, {last.device_id}: {last.refusal_reason}): were they deleted, disabled or "
        "given new keys? Fix that, then start the listener again")


def _in_fleet(agents: list[DeviceAgent], agent: DeviceAgent, message: str) -> str:
    """Prefix a fleet member's error with its device id."""
    return f"{agent.device_id}: {message}" if len(agents) > 1 else message


def install_stop_signals(stop: asyncio.Event, received: list[int] | None = None) -> Callable[[], None]:
    """Ctrl-C and SIGTERM set `stop` (a clean shutdown), and are appended to `received` when given;
    returns a function that undoes this."""
    loop = asyncio.get_running_loop()
    installed = []

    def stop_on(sig: int) -> None:
        if received is not None:
            received.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop_on, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass

    def remove() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)
    return remove
