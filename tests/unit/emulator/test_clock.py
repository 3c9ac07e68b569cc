"""IoT Hub's timestamp format: the fast formatter writes exactly what datetime would."""

from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from emulator.hub.clock import iso_timestamp, parse_timestamp


def reference(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@given(st.floats(min_value=-2e9, max_value=4e9, allow_nan=False))
def test_any_instant_is_written_as_datetime_writes_it(epoch_seconds):
    assert iso_timestamp(epoch_seconds) == reference(epoch_seconds)


def test_fractions_that_round_to_the_next_second_carry_into_it():
    for epoch_seconds in (1_700_000_000.9999996, 1_699_999_999.9999999, -0.0000004, 0.0):
        assert iso_timestamp(epoch_seconds) == reference(epoch_seconds)
    assert iso_timestamp(1_700_000_000.9999996) == "2023-11-14T22:13:21.000000Z"


def test_it_reads_back_to_the_microsecond():
    assert parse_timestamp(iso_timestamp(1_700_000_000.123456)) == 1_700_000_000.123456
