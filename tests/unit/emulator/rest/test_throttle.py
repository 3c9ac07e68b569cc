"""Each tier's throttle table against Microsoft's published figures (iot-hub-devguide-quotas-throttling,
one unit), written out here independently of throttle.TIERS: a minute's allowance goes through, the next
operation is refused 429 with Retry-After, a minute later the allowance is back; a Basic tier refuses
standard-only features 403 OperationNotAvailableInCurrentTier."""

from __future__ import annotations

import math

import pytest

from emulator.rest.throttle import (JOBS, METHODS, QUERIES, REGISTRY, TIERS, TWIN_READS, TWIN_UPDATES,
                                    OperationNotAvailableInCurrentTier, Throttle, Throttled, method_meters)

PER_MINUTE, PER_SECOND = 1, 60
KB_PER_SECOND = 60 / 4  # 4 KB meters per minute, per KB/s

#: The published table: operations per minute (direct methods: 4 KB meters per minute).
_BASIC_1 = {REGISTRY: 100 * PER_MINUTE, QUERIES: 20 * PER_MINUTE}
_STANDARD_1 = {**_BASIC_1, TWIN_READS: 100 * PER_SECOND, TWIN_UPDATES: 50 * PER_SECOND, JOBS: 100 * PER_MINUTE,
               METHODS: 160 * KB_PER_SECOND}
PUBLISHED = {
    "F1": _STANDARD_1,
    "S1": _STANDARD_1,
    "S2": {**_STANDARD_1, METHODS: 480 * KB_PER_SECOND},  # twins: "higher of 100/sec or 10/sec/unit"
    "S3": {REGISTRY: 5000 * PER_MINUTE, QUERIES: 1000 * PER_MINUTE, TWIN_READS: 500 * PER_SECOND,
           TWIN_UPDATES: 250 * PER_SECOND, JOBS: 5000 * PER_MINUTE, METHODS: 24 * 1024 * KB_PER_SECOND},
    "B1": _BASIC_1,
    "B2": _BASIC_1,
    "B3": {REGISTRY: 5000 * PER_MINUTE, QUERIES: 1000 * PER_MINUTE},
}
STANDARD_ONLY = (TWIN_READS, TWIN_UPDATES, JOBS, METHODS)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_every_tier_the_emulator_offers_is_published():
    assert set(TIERS) == set(PUBLISHED)


@pytest.mark.parametrize("tier", sorted(PUBLISHED))
def test_each_operation_class_gets_a_minute_of_its_published_rate_then_429(tier):
    assert set(TIERS[tier]) == set(PUBLISHED[tier])
    for operation, per_minute in PUBLISHED[tier].items():
        clock = Clock()
        limits = Throttle(tier, clock)
        limits.take(operation, per_minute - 1)
        limits.take(operation)  # exactly the allowance
        with pytest.raises(Throttled) as refused:
            limits.take(operation)
        assert refused.value.http_status == 429, (tier, operation)
        assert refused.value.retry_after == max(1, math.ceil(60 / per_minute)), (tier, operation)
        assert limits.refused[operation] == 1
        clock.now += 60  # a minute later the whole allowance is back, and no more
        limits.take(operation, per_minute)
        with pytest.raises(Throttled):
            limits.take(operation)


@pytest.mark.parametrize("tier", ["B1", "B2", "B3"])
def test_a_basic_tier_has_no_twins_methods_or_jobs(tier):
    limits = Throttle(tier, Clock())
    for operation in STANDARD_ONLY:
        with pytest.raises(OperationNotAvailableInCurrentTier) as refused:
            limits.take(operation)
        assert (refused.value.http_status, refused.value.error_code) == (403, 403010)
        assert refused.value.error_name == "OperationNotAvailableInCurrentTier"
        assert tier in refused.value.message
    limits.take(REGISTRY)
    limits.take(QUERIES)


@pytest.mark.parametrize("tier", ["F1", "S1", "S2", "S3"])
def test_free_and_standard_tiers_offer_every_throttled_feature(tier):
    limits = Throttle(tier, Clock())
    for operation in (REGISTRY, QUERIES, *STANDARD_ONLY):
        limits.take(operation)


def test_direct_methods_cost_one_meter_per_started_4_kb():
    assert [method_meters(size) for size in (0, 1, 4096, 4097, 8192, 160 * 1024)] == [1, 1, 1, 2, 2, 40]


def test_tier_names_are_case_insensitive_and_unknown_ones_refused():
    assert Throttle("s2", Clock()).tier == "S2"
    with pytest.raises(ValueError, match="S9"):
        Throttle("S9", Clock())
