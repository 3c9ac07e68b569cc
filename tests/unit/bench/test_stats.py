"""bench.stats: percentiles, summaries, rates and ratios."""

import pytest

from bench.stats import median, percentile, rate, ratio, summarize


def test_percentile_interpolates_between_closest_ranks():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0.5) == pytest.approx(2.5)
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 1.0) == 4.0
    assert percentile(list(map(float, range(101))), 0.99) == pytest.approx(99.0)


def test_percentile_of_one_sample_is_that_sample():
    assert percentile([7.0], 0.95) == 7.0


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_percentile_refuses_fractions_outside_zero_to_one(fraction):
    with pytest.raises(ValueError):
        percentile([1.0, 2.0], fraction)


def test_percentile_refuses_no_samples():
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_summarize_reports_milliseconds_from_unsorted_seconds():
    samples = [0.004, 0.001, 0.003, 0.002, 0.010]
    summary = summarize(samples)
    assert summary.count == 5
    assert summary.p50_ms == pytest.approx(3.0)
    assert summary.min_ms == pytest.approx(1.0)
    assert summary.max_ms == pytest.approx(10.0)
    assert summary.mean_ms == pytest.approx(4.0)
    assert summary.p99_ms == pytest.approx(9.76)  # 4 * 0.99 = rank 3.96 between 4 ms and 10 ms
    assert summary.to_json()["p50_ms"] == 3.0


def test_summarize_refuses_no_samples():
    with pytest.raises(ValueError):
        summarize([])


def test_rate_and_ratio_handle_missing_or_zero():
    assert rate(100, 4.0) == 25.0
    assert rate(100, 0.0) is None
    assert ratio(3.0, 1.5) == 2.0
    assert ratio(None, 1.0) is None
    assert ratio(1.0, None) is None
    assert ratio(1.0, 0.0) is None


def test_median_of_unsorted_values():
    assert median([5.0, 1.0, 3.0]) == 3.0
