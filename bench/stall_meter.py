"""The longest event-loop stall in a process: a task that wakes every millisecond and records the
largest gap between wake-ups, in wall time and in the loop thread's own CPU time. On a shared
machine the wall figure also holds time the process waited for a core; the CPU figure is work the
loop did without yielding (the emulator's own fault). The longest garbage-collector pause is
recorded too: a full collection walks every live object, so it grows with the fleet."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

TICK_SECONDS = 0.001


class StallMeter:
    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._gc_started = 0.0
        self.reset()

    def reset(self) -> None:
        self.max_wall = 0.0
        self.max_cpu = 0.0
        self.max_gc = 0.0
        self.ticks = 0

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        gc.callbacks.append(self._on_gc)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def report(self) -> dict[str, Any]:
        return {"max_stall_ms": self.max_wall * 1000.0, "max_cpu_stall_ms": self.max_cpu * 1000.0,
                "max_gc_pause_ms": self.max_gc * 1000.0, "ticks": self.ticks}

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.max_gc = max(self.max_gc, time.perf_counter() - self._gc_started)

    async def _run(self) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now_wall, now_cpu = time.perf_counter(), time.thread_time()
            # A tick is late by what exceeds its own sleep.
            self.max_wall = max(self.max_wall, now_wall - wall - TICK_SECONDS)
            self.max_cpu = max(self.max_cpu, now_cpu - cpu)
            self.ticks += 1
            wall, cpu = now_wall, now_cpu
