"""Run a fleet of simulated devices in one event loop until Ctrl-C/SIGTERM, like a tool at scale.

Every device is the listener's own DeviceAgent (device/app.py) on the fleet engine's clients. Starts
are bounded (`concurrency` at a time, each within --connect-timeout once its turn has come); a device
that cannot start does not stop the others: the fleet is ready once every device has had its first
try, says which failed and why, and keeps retrying them (backoff with jitter). Only when no device
starts at all does the fleet exit, with the failure's exit code. A device whose credentials the hub
refuses after it connected stops alone; once none is left, the fleet exits 4.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from hubsettings import DeviceSettings

from ..app import DeviceAgent, RunOptions, Sleep
from ..errors import DeviceError
from ..eventlog import EventLog, utc_now
from ..runner import all_refused_error, load_ca
from ..sdk import ClientFactory, describe_error
from .pacing import Retry
from .progress import Counts, Progress
from .stats import FleetStats, summary_line

CHECK_SECONDS = 0.5  # how often a running fleet looks for devices the hub has refused
SHOWN = 5  # device ids named in one line


@dataclass(frozen=True)
class FleetOptions:
    concurrency: int = 100  # device starts (DPS + connect + first twin read) in flight
    device_events: bool = True  # one line per device event, as the one-device listener prints
    progress_interval: float = 5.0  # plain progress lines (not a terminal): at most this often
    restart: Retry = field(default_factory=lambda: Retry(initial=5.0, maximum=60.0))  # failed starts


@dataclass
class Member:
    agent: DeviceAgent
    state: str = "waiting"  # waiting | starting | running | failed | refused
    attempts: int = 0
    failure: str = ""
    error: BaseException | None = None


class Fleet:
    def __init__(self, devices: Sequence[DeviceSettings], options: RunOptions, fleet: FleetOptions,
                 factory: ClientFactory, log: EventLog, device_log: EventLog, stop: asyncio.Event, *,
                 stats: FleetStats | None = None, live: TextIO | None = None, sleep: Sleep = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, now: Callable[[], datetime] = utc_now,
                 started: Callable[[list[DeviceAgent]], None] | None = None):
        cas: dict[Any, str | None] = {}

        def ca_of(settings: DeviceSettings) -> str | None:
            if settings.ca_file not in cas:
                cas[settings.ca_file] = load_ca(settings)
            return cas[settings.ca_file]

        rng = random.Random()
        self.members = [Member(DeviceAgent(s, options, factory, device_log, ca_pem=ca_of(s), sleep=sleep,
                                           clock=clock, now=now, rng=rng)) for s in devices]
        self.fleet = fleet
        self.stats = stats or FleetStats()
        self._log = log
        self._stop = stop
        self._sleep = sleep
        self._started = started
        self._rng = rng
        self._queue: asyncio.Queue[Member] = asyncio.Queue()
        self._settled = 0
        self._closing = False
        self._all_settled = asyncio.Event()
        self._retries: set[asyncio.Task] = set()  # failed starts waiting for their next try
        self.progress = Progress(self.counts, live=live, say=self._say, interval=fleet.progress_interval)

    def _say(self, line: str) -> None:
        self.progress.clear()
        self._log.info(line)

    def counts(self) -> Counts:
        failed = restarting = connected = 0
        for m in self.members:
            failed += m.state in ("failed", "refused")
            restarting += m.state == "starting" and m.attempts > 1
            connected += m.agent.connected
        return Counts(connected, len(self.members), failed, self.stats.reconnecting + restarting)

    async def run(self) -> int:
        """Serve until `stop` is set (0), or raise the DeviceError that stopped the fleet."""
        for member in self.members:
            self._queue.put_nowait(member)
        workers = [asyncio.create_task(self._worker()) for _ in range(min(self.fleet.concurrency, len(self.members)))]
        progress = asyncio.create_task(self.progress.run())
        failure: BaseException | None = None
        try:
            failure = await self._serve()
        finally:
            self._closing = True
            await cancel_until_done((*workers, progress, *self._retries))
            self.progress.clear()
            left = sum(1 for m in self.members if m.state == "running")
            if failure is None:
                self._log.info(f"Stopping: disconnecting {left:,} device{'s' if left != 1 else ''}")
            await asyncio.gather(*(m.agent.stop() for m in self.members), return_exceptions=True)
            self._log.info(summary_line(self.stats, len(self.members)))
        if failure is not None:
            raise failure
        refused = [m.agent.device_id for m in self.members if m.state == "refused"]
        if refused:
            self._log.info(f"Stopped ({len(refused)} of {len(self.members)} devices had stopped earlier, their "
                           f"credentials refused: {_names(refused)})")
        else:
            self._log.info("Stopped")
        return 0

    async def _serve(self) -> BaseException | None:
        stop_wait = asyncio.create_task(self._stop.wait())
        settled = asyncio.create_task(self._all_settled.wait())
        try:
            await asyncio.wait({stop_wait, settled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            settled.cancel()
        if self._stop.is_set():
            stop_wait.cancel()
            return None
        running = [m for m in self.members if m.state == "running"]
        if not running:
            stop_wait.cancel()
            return self._none_started()
        failed = [m for m in self.members if m.state in ("failed", "starting")]
        self._say(f"{len(running):,} device{'s' if len(running) != 1 else ''} running"
                  + (f" ({len(failed):,} failed to start, retrying them)" if failed else "")
                  + "; press Ctrl-C to stop")
        for line in self._failure_lines(failed):
            self._say(line)
        if self._started is not None:
            self._started([m.agent for m in self.members])
        self.progress.quiet = max(self.progress.quiet, 60.0)  # calmer once running
        try:
            while not self._stop.is_set():
                refusal = await self._stop_refused()
                if refusal is not None:
                    return refusal
                await asyncio.wait({stop_wait}, timeout=CHECK_SECONDS)
        finally:
            stop_wait.cancel()
        return None

    async def _stop_refused(self) -> BaseException | None:
        """Stop the devices the hub refused after they had connected; an error once none is left."""
        last = None
        for member in self.members:
            if member.state == "running" and member.agent.credentials_refused.is_set():
                member.state = "refused"
                await member.agent.stop()
                last = member
                alive = sum(1 for m in self.members if m.state not in ("refused",))
                if alive:
                    self._say(f"{member.agent.device_id} stopped (credentials refused); {alive:,} of "
                              f"{len(self.members):,} devices still running or retrying")
        if last is not None and all(m.state == "refused" for m in self.members):
            agents = [m.agent for m in self.members]
            return all_refused_error(agents, last.agent)
        return None

    def _none_started(self) -> BaseException:
        """Every device failed its first start: the most common failure, as this fleet's error."""
        errors = [m for m in self.members if m.error is not None]
        kinds = collections.Counter(type(m.error) for m in errors)
        kind = kinds.most_common(1)[0][0]
        first = next(m for m in errors if type(m.error) is kind)
        text = str(first.error) if isinstance(first.error, DeviceError) else first.failure
        if len(self.members) == 1:
            return first.error if isinstance(first.error, DeviceError) else DeviceError(text)
        error_type = kind if issubclass(kind, DeviceError) else DeviceError
        return error_type(f"none of the {len(self.members):,} devices started ({len(errors):,} failed; "
                          f"{first.agent.device_id}: {text})")

    def _failure_lines(self, failed: list[Member]) -> list[str]:
        by_reason: dict[str, list[str]] = collections.defaultdict(list)
        for member in failed:
            by_reason[member.failure or "still starting"].append(member.agent.device_id)
        return [f"  {len(ids):,} failed: {_names(ids)}: {reason}" for reason, ids in by_reason.items()]

    async def _worker(self) -> None:
        while not self._closing:  # also the way out if a cancellation was swallowed between starts
            member = await self._queue.get()
            if self._stop.is_set() or self._closing:
                return
            member.state = "starting"
            member.attempts += 1
            try:
                await member.agent.start()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - one device's failure; it is retried, the rest go on
                self._failed(member, e)
            else:
                member.state = "running"
                if member.attempts > 1 and self._all_settled.is_set():
                    self._say(f"{member.agent.device_id} started (attempt {member.attempts})")
                member.failure, member.error = "", None
            if member.attempts == 1:
                self._settled += 1
                if self._settled == len(self.members):
                    self._all_settled.set()

    def _failed(self, member: Member, error: BaseException) -> None:
        member.state = "failed"
        member.error = error
        member.failure = str(error) if isinstance(error, DeviceError) else describe_error(error)
        # After the first round the progress line counts failures (a line per retry would flood).
        if self._closing:
            return
        task = asyncio.get_running_loop().create_task(self._requeue(member))
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _requeue(self, member: Member) -> None:
        await self._sleep(self.fleet.restart.delay(member.attempts, self._rng))
        if not (self._stop.is_set() or self._closing):
            self._queue.put_nowait(member)


async def cancel_until_done(tasks: Sequence[asyncio.Task], pause: float = 0.05) -> None:
    """Cancel until every task has ended. Python 3.11's wait_for swallows a cancellation that arrives
    as its inner work completes, and a device start is a chain of them (DPS, connect): such a start
    would carry on into its next step, so it is cancelled again wherever it has got to."""
    while pending := [t for t in tasks if not t.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=pause)


def _names(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:SHOWN])
    return shown + (f" and {len(ids) - SHOWN:,} more" if len(ids) > SHOWN else "")


class QuietEventLog(EventLog):
    """A fleet too big for one line per device event: only the fleet's own lines are printed."""

    def event(self, device_id: str, message: str, **data: Any) -> None:
        pass

