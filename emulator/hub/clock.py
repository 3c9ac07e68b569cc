"""Time for the model: an injected clock (epoch seconds) and IoT Hub's timestamp format."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

#: Returns the current time as epoch seconds. Tests inject a fake one; the server uses time.time.
Clock = Callable[[], float]

#: What IoT Hub reports for "never" (e.g. lastActivityTime of a device that never connected).
NEVER = "0001-01-01T00:00:00Z"


def system_clock() -> float:
    return time.time()


def iso_timestamp(epoch_seconds: float) -> str:
    """ISO 8601 UTC with microseconds and a Z, as IoT Hub (and msrest) expect."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeClock:
    """A clock that only moves when told to: for tests of timeouts and timestamps."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
