"""Long work on the event loop in short slices: a loop over the fleet calls `pause_if_due()` per
item and yields once it has run SLICE_SECONDS, so keepalives and method deadlines are served
between slices instead of waiting for the whole loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

#: How long one synchronous stretch may run before it yields to the event loop.
SLICE_SECONDS = 0.005


class Slices:
    """One budget of synchronous time, shared by every task that pauses through it: the workers of one
    job together run at most one slice per loop pass (each starting a slice of its own on resuming would
    let N workers run N slices before the loop polls its sockets again)."""

    def __init__(self, seconds: float | None = None, clock: Callable[[], float] = time.perf_counter):
        self._seconds = SLICE_SECONDS if seconds is None else seconds
        self._clock = clock
        self._started = clock()
        self._next_slice: asyncio.Future[None] | None = None

    async def pause_if_due(self) -> None:
        if self._clock() - self._started < self._seconds:
            return
        if self._next_slice is None:  # the first to find the slice spent: the next begins a pass later
            loop = asyncio.get_running_loop()
            self._next_slice = loop.create_future()
            loop.call_soon(self._begin_slice)
        await asyncio.shield(self._next_slice)  # one cancelled worker must not cancel the others' wait

    def _begin_slice(self) -> None:
        next_slice, self._next_slice = self._next_slice, None
        self._started = self._clock()
        if next_slice is not None:
            next_slice.set_result(None)
