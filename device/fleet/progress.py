"""The fleet's state at a glance: a live line on a terminal, plain lines (only when something
changed) otherwise, e.g. `connected 8,412 / 10,000, failed 3, retrying 12`."""

from __future__ import annotations

import asyncio
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
    def __init__(self, counts: Callable[[], Counts], *, live: TextIO | None, say: Callable[[str], None],
                 interval: float):
        self._counts = counts
        self._live = live  # a terminal: rewrite one line in place
        self._say = say  # otherwise: one plain line per change, at most every `interval` seconds
        self.interval = interval
        self._last = ""

    async def run(self) -> None:
        while True:
            await asyncio.sleep(LIVE_SECONDS if self._live else self.interval)
            self.show()

    def show(self) -> None:
        text = self._counts().line()
        if self._live is not None:
            self._live.write("\r\x1b[K" + text)
            self._live.flush()
        elif text != self._last:
            self._say(text)
        self._last = text

    def clear(self) -> None:
        """Before an ordinary line, so that it does not run into the live one."""
        if self._live is not None:
            self._live.write("\r\x1b[K")
            self._live.flush()
