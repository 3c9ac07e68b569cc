"""Opt-in throttling of the service API, modelled on IoT Hub's per-tier operation throttles.

IoT Hub limits each class of service operation per hub (one unit here) and, past the limit, answers
429 ThrottlingException; clients must back off and retry. Its limits "are applied in minute ranges"
with traffic shaping for bursts, so each class is a token bucket that holds one minute's allowance
and refills at the documented rate. Direct methods are metered in 4 KB units of payload, as IoT Hub
does. Off unless the emulator runs with `--throttle TIER`; the clock is injectable for tests.

Limits (iot-hub-devguide-quotas-throttling, one unit). Every tier: identity registry operations
100/min (B3, S3: 5,000/min); queries 20/min (B3, S3: 1,000/min). Standard tiers (F1, S1, S2, S3) only:
twin reads 100/s (S3: 500/s); twin updates 50/s (S3: 250/s); jobs operations 100/min (S3: 5,000/min);
direct methods 160 KB/s (S2: 480 KB/s, S3: 24 MB/s). A Basic hub (B1, B2, B3) has no twins, direct
methods or jobs: IoT Hub answers those 403 OperationNotAvailableInCurrentTier (403010), whatever the
rate. Not modelled: device-side throttles (new connections, device-to-cloud sends), jobs device
operations (the per-device steps a job runs), cloud-to-device sends.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..hub.errors import HubError, ThrottlingException

REGISTRY, TWIN_READS, TWIN_UPDATES, QUERIES, JOBS, METHODS = (
    "identity registry operations", "twin reads", "twin updates", "queries", "jobs operations", "direct methods")
METER_BYTES = 4 * 1024  # direct methods count their payload in 4 KB meters

_PER_MINUTE = 1 / 60
#: Operations (for METHODS: 4 KB meters) per second, by tier; a class a tier lacks is unavailable there.
_BASIC_1 = {REGISTRY: 100 * _PER_MINUTE, QUERIES: 20 * _PER_MINUTE}
_BASIC_3 = {REGISTRY: 5000 * _PER_MINUTE, QUERIES: 1000 * _PER_MINUTE}
_STANDARD_1 = {TWIN_READS: 100.0, TWIN_UPDATES: 50.0, JOBS: 100 * _PER_MINUTE, METHODS: 160 / 4}
TIERS: dict[str, dict[str, float]] = {
    "F1": {**_BASIC_1, **_STANDARD_1},
    "B1": _BASIC_1,
    "S1": {**_BASIC_1, **_STANDARD_1},
    "B2": _BASIC_1,
    "S2": {**_BASIC_1, **_STANDARD_1, METHODS: 480 / 4},
    "B3": _BASIC_3,
    "S3": {**_BASIC_3, TWIN_READS: 500.0, TWIN_UPDATES: 250.0, JOBS: 5000 * _PER_MINUTE, METHODS: 24 * 1024 / 4},
}


class Throttled(ThrottlingException):
    """429 ThrottlingException, with the seconds after which a retry can succeed (Retry-After)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class OperationNotAvailableInCurrentTier(HubError):
    """What a Basic-tier hub answers for a standard-tier feature (twins, direct methods, jobs)."""

    error_code, error_name = 403010, "OperationNotAvailableInCurrentTier"


@dataclass
class _Bucket:
    rate: float  # tokens per second
    capacity: float  # one minute's allowance: IoT Hub throttles "in minute ranges"
    tokens: float
    updated: float


class Throttle:
    """Token buckets per operation class for one tier. Not thread-safe (the emulator's loop only)."""

    def __init__(self, tier: str, clock: Callable[[], float] | None = None):
        if tier.upper() not in TIERS:
            raise ValueError(f"unknown IoT Hub tier '{tier}'; use one of {', '.join(TIERS)}")
        self.tier = tier.upper()
        self._clock = clock or time.monotonic
        now = self._clock()
        self._buckets = {operation: _Bucket(rate, rate * 60, rate * 60, now)
                         for operation, rate in TIERS[self.tier].items()}
        self.refused: dict[str, int] = {operation: 0 for operation in self._buckets}

    def take(self, operation: str, cost: float = 1.0) -> None:
        """Spend `cost` tokens of `operation`, or raise Throttled (nothing spent); an operation this
        tier does not offer raises OperationNotAvailableInCurrentTier."""
        bucket = self._buckets.get(operation)
        if bucket is None:
            raise OperationNotAvailableInCurrentTier(
                f"{operation} are not available in the {self.tier} tier (a Basic-tier hub); "
                f"use a Standard tier (S1, S2, S3) or F1")
        now = self._clock()
        bucket.tokens = min(bucket.capacity, bucket.tokens + (now - bucket.updated) * bucket.rate)
        bucket.updated = now
        cost = min(cost, bucket.capacity)  # a call bigger than a minute's allowance still goes through once
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return
        self.refused[operation] += 1
        retry_after = max(1, math.ceil((cost - bucket.tokens) / bucket.rate))
        raise Throttled(f"{operation} are throttled ({self.tier} tier limits); retry after {retry_after} s",
                        retry_after)


def method_meters(body_size: int) -> int:
    """4 KB meters a direct-method call costs: 0-4 KB is one, 4-8 KB two, ..."""
    return max(1, math.ceil(body_size / METER_BYTES))
