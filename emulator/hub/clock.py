"""Time for the model: an injected clock (epoch seconds) and IoT Hub's timestamp format, both ways.
Every part of the hub (registry, twins, jobs) reads and writes time through this module."""

from __future__ import annotations

import functools
import math
import re
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
    # Hot: every job row and device message. The date and time to the second are formatted once per
    # second (strftime is the slow part); the microseconds are appended.
    # Rounded as datetime.fromtimestamp rounds (the fraction alone, half to even).
    fraction, whole = math.modf(epoch_seconds)
    seconds, micros = int(whole), round(fraction * 1_000_000)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    elif micros < 0:
        seconds, micros = seconds - 1, micros + 1_000_000
    return f"{_to_the_second(seconds)}.{micros:06d}Z"


@functools.lru_cache(maxsize=256)
def _to_the_second(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def parse_timestamp(text: str) -> float:
    """ISO 8601 -> epoch seconds; a time without a zone is UTC (the SDK may send one)."""
    cleaned = text.strip()
    # Python 3.11 takes at most 6 fractional digits in some layouts; .NET writes 7.
    cleaned = re.sub(r"(\.\d{6})\d+", r"\1", cleaned)
    moment = datetime.fromisoformat(cleaned.replace("z", "Z"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


class FakeClock:
    """A clock that only moves when told to: for tests of timeouts and timestamps."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
