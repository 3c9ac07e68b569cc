"""Picking a loopback address for a test's emulator."""

from __future__ import annotations

import random
from collections.abc import Iterable

from .. import loopback
from .identity import EmulatorStartError

#: Addresses tried when the one picked is taken before the emulator binds it (another xdist worker).
START_ATTEMPTS = 5


def free_address(exclude: Iterable[str] = ()) -> str:
    """A 127.0.0.X whose emulator ports are free now (127.0.0.1 where it is the only loopback address)."""
    try:
        # Not the global random: a seeded test run (pytest-randomly) would pick the same one in every worker.
        return loopback.free_loopback_address(exclude=exclude, fall_back_to_127_0_0_1=True, rng=random.Random())
    except loopback.NoFreeLoopbackAddress as e:
        raise EmulatorStartError(str(e)) from None
