"""Poll-until helpers: read often at first, then back off, always bounded by a deadline.

The clock and sleep are injected so that tests never wait for real.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .hub import HubClient
from .inputs import reported_value

T = TypeVar("T")

TERMINAL_JOB_STATUSES = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class Backoff:
    """Delays initial, initial*factor, ... capped at maximum."""

    initial: float = 0.25
    factor: float = 2.0
    maximum: float = 5.0

    def delays(self) -> Iterator[float]:
        delay = min(self.initial, self.maximum)
        while True:
            yield delay
            delay = min(delay * self.factor, self.maximum)


class PollTimedOut(Exception, Generic[T]):
    """The condition did not hold before the deadline; carries the last value read."""

    def __init__(self, last: T, elapsed: float):
        super().__init__(f"timed out after {elapsed:.0f} s")
        self.last = last
        self.elapsed = elapsed


@dataclass
class Poller:
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    backoff: Backoff = Backoff()

    def until(self, read: Callable[[], T], done: Callable[[T], bool], timeout: float,
              on_poll: Callable[[T, float], None] | None = None) -> T:
        """Call read() until done(value); raise PollTimedOut once timeout seconds have passed."""
        start = self.clock()
        delays = self.backoff.delays()
        while True:
            value = read()
            elapsed = self.clock() - start
            if on_poll:
                on_poll(value, elapsed)
            if done(value):
                return value
            remaining = timeout - elapsed
            if remaining <= 0:
                raise PollTimedOut(value, elapsed)
            self.sleep(min(next(delays), remaining))


def wait_for_reported(hub: HubClient, poller: Poller, device_id: str, path: str,
                      done: Callable[[Any], bool], timeout: float,
                      on_poll: Callable[[dict, float], None] | None = None) -> dict:
    """Poll the twin until done(reported value at path); returns the twin that satisfied it."""
    return poller.until(lambda: hub.get_twin(device_id), lambda twin: done(reported_value(twin, path)),
                        timeout, on_poll)


def wait_for_reported_change(hub: HubClient, poller: Poller, device_id: str, path: str, before: Any,
                             timeout: float,
                             on_poll: Callable[[dict, float], None] | None = None) -> dict:
    """Poll until the reported property at path is present and differs from `before`."""
    return wait_for_reported(hub, poller, device_id, path,
                             lambda value: value is not None and value != before, timeout, on_poll)


def wait_for_job(hub: HubClient, poller: Poller, job_id: str, timeout: float,
                 on_poll: Callable[[dict, float], None] | None = None) -> dict:
    """Poll the job until it is completed, failed or cancelled; returns the final job."""
    return poller.until(lambda: hub.get_job(job_id),
                        lambda job: job.get("status") in TERMINAL_JOB_STATUSES, timeout, on_poll)
