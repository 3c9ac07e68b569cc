"""Keeping the fleet's long-lived objects out of the cycle collector's full passes.

A hub with 100,000 devices holds millions of dicts (devices, twins, their query documents). CPython's
full (generation 2) collection walks every one of them: 0.3-0.8 s with the event loop stopped, at
whatever moment allocations cross its threshold. `gc.freeze()` moves the objects alive now to a
permanent generation that collections skip. Model objects form no reference cycles, so refcounting
still frees them when they are replaced or deleted; the cost is that cyclic garbage that happens to
exist at the moment of a freeze is never reclaimed, so freezes are rare: after loading the store and
after batches of at least LARGE_BATCH new objects' worth of devices or documents.
"""

from __future__ import annotations

import gc

LARGE_BATCH = 10_000


def settle(count: int) -> None:
    """`count` devices (or documents) were just created: freeze them if there are many."""
    if count >= LARGE_BATCH:
        gc.freeze()
