"""Long loops yield in slices, and tasks sharing one Slices share its budget: N workers of one job run one
slice per loop pass together, not one each."""

import asyncio

from emulator.hub.slices import Slices


class StepClock:
    """Time moves only when a work item is done."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_workers_sharing_slices_run_one_slice_per_loop_pass_between_them():
    clock = StepClock()
    slices = Slices(seconds=10, clock=clock)  # 10 work items of 1 s each per slice
    items_between_passes: list[int] = []
    done_since_pass = 0
    finished = False

    async def worker() -> None:
        nonlocal done_since_pass
        for _ in range(100):
            clock.now += 1  # one device's synchronous work
            done_since_pass += 1
            await slices.pause_if_due()

    async def other_connection() -> None:  # what the loop also serves: runs once per loop pass
        nonlocal done_since_pass
        while not finished:
            items_between_passes.append(done_since_pass)
            done_since_pass = 0
            await asyncio.sleep(0)

    watcher = asyncio.ensure_future(other_connection())
    await asyncio.gather(*(worker() for _ in range(8)))
    finished = True
    await watcher
    # At most one slice, plus one item for each worker that resumed after the slice ran out.
    assert max(items_between_passes) <= 10 + 8
    assert sum(items_between_passes) + done_since_pass == 800


async def test_a_single_loop_lets_the_loop_run_once_per_slice():
    clock = StepClock()
    slices = Slices(seconds=5, clock=clock)
    passes = 0
    finished = False

    async def other_connection() -> None:
        nonlocal passes
        while not finished:
            passes += 1
            await asyncio.sleep(0)

    watcher = asyncio.ensure_future(other_connection())
    await asyncio.sleep(0)
    served = passes
    for _ in range(20):
        clock.now += 1
        await slices.pause_if_due()
    finished = True
    await watcher
    assert passes - served >= 4  # served between the four slices


async def test_a_cancelled_worker_does_not_cancel_the_others():
    clock = StepClock()
    slices = Slices(seconds=1, clock=clock)
    clock.now = 5
    first = asyncio.ensure_future(slices.pause_if_due())
    second = asyncio.ensure_future(slices.pause_if_due())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, 1)  # still woken for the next slice
