"""The fleet's state at a glance: a live line on a terminal, plain lines (only when something
changed) otherwise, e.g. `connected 8,412 / 10,000, failed 3, retrying 12`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

LIVE_SECONDS = 0.5


@dataclass(frozen=True)
class Counts:
    connected: int
    total: int
    failed: int  # not running: the start failed (retried later) or the hub refused the credentials
    retrying: int  # reconnecting after a loss, or retrying a failed start

    def line(self) -> str:
        return (f"connected {self.connected:,} / {self.total:,}, failed {self.failed:,}, "
                f"retrying {self.retrying:,}")


class Progress:
    """Plain lines: one per change, at most every `quiet` seconds, except that the fleet becoming
    whole (every device connected) or ceasing to be is said within `interval` seconds."""

    def __init__(self, counts: Callable[[], Counts], *, live: TextIO | None, say: Callable[[str], None],
                 interval: float, clock: Callable[[], float] = time.monotonic):
        self._counts = counts
        self._live = live  # a terminal: rewrite one line in place
        self._say = say
        self.interval = interval
        self.quiet = interval  # raised once the fleet runs
        self._clock = clock
        self._last = ""
        self._last_said = -float("inf")
        self._was_whole: bool | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(LIVE_SECONDS if self._live else self.interval)
            self.show()

    def show(self) -> None:
        counts = self._counts()
        text = counts.line()
        if self._live is not None:
            self._live.write("\r\x1b[K" + text)
            self._live.flush()
            return
        whole = counts.connected == counts.total
        now = self._clock()
        if text != self._last and (whole != self._was_whole or now - self._last_said >= self.quiet):
            self._say(text)
            self._last, self._last_said, self._was_whole = text, now, whole

    def clear(self) -> None:
        """Before an ordinary line, so that it does not run into the live one."""
        if self._live is not None:
            self._live.write("\r\x1b[K")
            self._live.flush()
