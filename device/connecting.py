"""The first connection: retried with exponential backoff within a bounded time.

A refused credential is not retried (it will not get better); anything that looks like "the hub is
not there yet" is, with one line per failed attempt, until --connect-timeout has passed.
Later drops are the SDK's business (it reconnects by itself); the app only logs them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import AuthenticationRefused, HubUnreachable
from .sdk import describe_error, is_credential_error, is_transient

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    timeout: float = 60.0  # no new attempt starts after this many seconds
    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 15.0
    jitter: float = 0.0  # a fleet waits a random part of each delay, so its devices do not retry in step

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1-based): 1, 2, 4, 8, 15, 15, ...
        (each shortened by up to `jitter` of itself at random)."""
        ceiling = min(self.maximum, self.initial * self.factor ** (attempt - 1))
        return ceiling * (1.0 - self.jitter * random.random()) if self.jitter else ceiling


async def with_backoff(attempt: Callable[[], Awaitable[T]], *, what: str, target: str,
                       backoff: Backoff, say: Callable[[str], None], hint: str = "",
                       sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                       clock: Callable[[], float] = time.monotonic) -> T:
    """Run `attempt` until it succeeds, a credential is refused, or backoff.timeout has passed.

    `what` names the step ("connect", "provisioning"), `target` the far end ("IoT hub localhost");
    `hint` is added to the final error (e.g. how to start the local emulator).
    """
    started = clock()
    number = 0
    while True:
        number += 1
        remaining = backoff.timeout - (clock() - started)
        try:
            return await asyncio.wait_for(attempt(), timeout=max(remaining, 1.0))
        except TimeoutError as e:
            reason, error = f"no answer within {max(remaining, 1.0):.0f} s", e
        except Exception as e:  # noqa: BLE001 - sorted below; anything unknown propagates
            if is_credential_error(e):
                raise AuthenticationRefused(
                    f"{target} refused the device's credentials ({describe_error(e)}): check the key, "
                    "and that the device (or its enrollment) exists and is enabled") from None
            if not is_transient(e):
                raise
            reason, error = describe_error(e), e
        elapsed = clock() - started
        if elapsed >= backoff.timeout:
            say(f"{what} attempt {number} failed: {reason}; giving up after {elapsed:.0f} s")
            message = f"could not reach {target} within {backoff.timeout:g} s (last error: {reason})"
            raise HubUnreachable(message + (f". {hint}" if hint else "")) from error
        wait = min(backoff.delay(number), backoff.timeout - elapsed)  # one last try at the deadline
        say(f"{what} attempt {number} failed: {reason}; retrying in {wait:.3g} s")
        await sleep(wait)
