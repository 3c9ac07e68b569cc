"""Latency and rate arithmetic for the benchmarks (pure: no clocks, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class LatencySummary:
    """Round-trip figures in milliseconds over `count` samples."""

    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float

    def to_json(self) -> dict[str, float | int]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The `fraction` (0..1) percentile by linear interpolation between closest ranks (numpy's
    default), so p50 of an even count is the mean of the two middle values."""
    if not sorted_values:
        raise ValueError("percentile of no samples")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be between 0 and 1")
    position = fraction * (len(sorted_values) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    weight = position - lower
    return sorted_values[lower] * (1.0 - weight) + sorted_values[upper] * weight


def summarize(samples_seconds: Sequence[float]) -> LatencySummary:
    """Summarise round-trip samples given in seconds."""
    if not samples_seconds:
        raise ValueError("no samples to summarise")
    ms = sorted(s * 1000.0 for s in samples_seconds)
    return LatencySummary(count=len(ms), p50_ms=percentile(ms, 0.50), p95_ms=percentile(ms, 0.95),
                          p99_ms=percentile(ms, 0.99), mean_ms=sum(ms) / len(ms), min_ms=ms[0], max_ms=ms[-1])


def rate(count: int, seconds: float) -> float | None:
    """Operations per second; None when no time passed (nothing meaningful to divide by)."""
    return count / seconds if seconds > 0 else None


def ratio(ours: float | None, reference: float | None) -> float | None:
    """ours / reference, or None when either is missing or the reference is zero."""
    if ours is None or reference is None or reference == 0:
        return None
    return ours / reference


def median(values: Sequence[float]) -> float:
    return percentile(sorted(values), 0.5)
