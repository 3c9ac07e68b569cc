"""How fast a fleet may knock on the hub's door: a bound on handshakes in flight and on new ones per
second (IoT Hub and DPS throttle both), and retry delays with jitter so that a fleet dropped all at
once (an emulator restart, a network blip) does not come back all at once."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass


class RateLimit:
    """At most `per_second` starts per second, spaced evenly (None: no limit)."""

    def __init__(self, per_second: float | None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self._interval = 1.0 / per_second if per_second else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0

    async def wait(self) -> None:
        if not self._interval:
            return
        now = self._clock()
        start = max(now, self._next)
        self._next = start + self._interval
        if start > now:
            await self._sleep(start - now)


class Gate:
    """A door with `concurrency` places and a rate limit: `async with gate.slot(): <handshake>`."""

    def __init__(self, concurrency: int, per_second: float | None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.concurrency = concurrency
        self.per_second = per_second
        self._places = asyncio.Semaphore(concurrency)
        self._rate = RateLimit(per_second, clock=clock, sleep=sleep)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._places:
            await self._rate.wait()
            yield


@dataclass(frozen=True)
class Retry:
    """Exponential backoff with jitter: attempt n waits a random time in [(1 - jitter) d, d] where
    d = min(maximum, initial * factor ** (n - 1))."""
    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.maximum, self.initial * self.factor ** max(0, attempt - 1))
        return ceiling * (1.0 - self.jitter * (rng or random).random())


#: After a hub or DPS asked us to slow down (429, CONNACK 3), wait at least this long.
THROTTLED_SECONDS = 5.0
