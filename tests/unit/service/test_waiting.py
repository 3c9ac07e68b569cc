from __future__ import annotations

import itertools

import pytest

from service.waiting import Backoff, Poller, PollTimedOut

from .conftest import FakeClock


def test_backoff_doubles_up_to_the_cap():
    assert list(itertools.islice(Backoff(0.25, 2, 3).delays(), 6)) == [0.25, 0.5, 1, 2, 3, 3]
    assert list(itertools.islice(Backoff(1, 2, 0.5).delays(), 2)) == [0.5, 0.5]


def test_poller_returns_the_first_value_that_satisfies():
    clock = FakeClock()
    values = iter([1, 2, 3, 4])
    seen = []
    poller = Poller(clock=clock.monotonic, sleep=clock.sleep, backoff=Backoff(1, 2, 10))
    assert poller.until(lambda: next(values), lambda v: v >= 3, 100, lambda v, t: seen.append((v, t))) == 3
    assert seen == [(1, 0), (2, 1), (3, 3)]
    assert clock.sleeps == [1, 2]


def test_poller_times_out_exactly_at_the_deadline_with_the_last_value():
    clock = FakeClock()
    poller = Poller(clock=clock.monotonic, sleep=clock.sleep, backoff=Backoff(1, 2, 4))
    with pytest.raises(PollTimedOut) as info:
        poller.until(lambda: "still", lambda v: False, 10)
    assert clock.sleeps == [1, 2, 4, 3]
    assert info.value.last == "still" and info.value.elapsed == 10


def test_zero_timeout_reads_once():
    clock = FakeClock()
    poller = Poller(clock=clock.monotonic, sleep=clock.sleep)
    with pytest.raises(PollTimedOut):
        poller.until(lambda: 0, lambda v: False, 0)
    assert clock.sleeps == []
