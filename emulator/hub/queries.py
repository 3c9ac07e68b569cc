"""Which collection a query runs over, and running it without holding up the event loop.

`FROM devices` reads the hub's read-only twin documents (twin_views.py: indexes for equality,
scans in slices); `FROM devices.jobs` reads the job scheduler's per-device records. Rows share
values with those documents: a front serialises them and must not change them.
"""

from __future__ import annotations

from collections.abc import Iterable

from .query import DEVICE_JOBS, Query
from .query.execute import Rows
from .slices import Slices
from .twin_views import TwinViews


async def run_query(query: Query, twins: TwinViews, device_jobs: Iterable[dict]) -> list[dict]:
    """Every row of `query` (the caller pages them); `device_jobs` is read only for devices.jobs."""
    slices = Slices()
    rows = Rows(query)
    if query.source == DEVICE_JOBS:
        condition = query.condition
        for document in device_jobs:
            if condition is None or condition.matches(document):
                rows.add(document)
                if rows.full:
                    break
            await slices.pause_if_due()
        return rows.result()
    matching = await twins.select(query.condition)
    if query.projections is None:  # SELECT *: the documents are the rows
        return matching if query.top is None else matching[:query.top]
    for document in matching:
        rows.add(document)
        if rows.full:
            break
        await slices.pause_if_due()
    return rows.result()
