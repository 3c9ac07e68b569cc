"""Long work on the event loop in short slices: a loop over the fleet calls `pause_if_due()` per
item and yields once it has run SLICE_SECONDS, so keepalives and method deadlines are served
between slices instead of waiting for the whole loop."""

from __future__ import annotations

import asyncio
import time

#: How long one synchronous stretch may run before it yields to the event loop.
SLICE_SECONDS = 0.005


class Slices:
    def __init__(self, seconds: float | None = None):
        self._seconds = SLICE_SECONDS if seconds is None else seconds
        self._started = time.perf_counter()

    async def pause_if_due(self) -> None:
        if time.perf_counter() - self._started >= self._seconds:
            await asyncio.sleep(0)
            self._started = time.perf_counter()
