"""Received telemetry: a bounded buffer (oldest dropped first) with listeners for live consumers."""

from emulator.hub import FakeClock, Hub


def test_buffer_keeps_the_latest_messages_and_counts_all():
    hub = Hub(clock=FakeClock(1_700_000_000), telemetry_capacity=2)
    seen = []
    hub.telemetry.add_listener(seen.append)
    for n in range(3):
        hub.receive_telemetry("d1", f"m{n}".encode(), {"k": str(n)}, {"$.ct": "text/plain"})
    assert [m.body for m in hub.telemetry.messages()] == [b"m1", b"m2"]
    assert hub.telemetry.received_total == 3 and len(seen) == 3
    assert hub.telemetry.messages("other") == []
    assert seen[0].to_json() == {"deviceId": "d1", "body": "m0", "properties": {"k": "0"},
                                 "systemProperties": {"$.ct": "text/plain"},
                                 "enqueuedTime": "2023-11-14T22:13:20.000000Z"}


def test_binary_bodies_are_shown_as_base64():
    hub = Hub()
    message = hub.receive_telemetry("d1", b"\xff\x00")
    assert message.to_json()["body"] == {"base64": "/wA="}


# ---- the Event Hubs-compatible log ---------------------------------------------------------------
import pytest  # noqa: E402

from emulator.hub.telemetry import (ConsumerGroupError, Partition, TelemetryLog, TelemetryMessage,  # noqa: E402
                                    partition_of)


def test_a_devices_messages_stay_in_one_partition_with_consecutive_numbers_and_offsets():
    clock = FakeClock(1_700_000_000)
    hub = Hub(clock=clock)
    hub.create_device("sensor-7")
    stored = [hub.receive_telemetry("sensor-7", f"m{n}".encode()) for n in range(3)]
    assert {m.partition for m in stored} == {partition_of("sensor-7")}
    assert [m.sequence_number for m in stored] == [0, 1, 2]
    assert stored[0].offset == 0 and stored[1].offset == stored[0].size and stored[2].offset > stored[1].offset
    assert stored[0].generation_id == hub.get_device("sensor-7").generation_id != ""


def test_partitions_are_a_stable_hash_of_the_device_id_spread_over_four():
    assert partition_of("myDeviceId") == partition_of("myDeviceId")
    assert {partition_of(f"device-{n}") for n in range(100)} == {0, 1, 2, 3}


def test_retention_drops_by_count_and_by_age_and_reading_starts_at_the_oldest_kept():
    log = TelemetryLog(capacity=3, partition_count=1, retention_seconds=60)
    for n in range(5):
        log.add(TelemetryMessage("d", f"m{n}".encode(), enqueued_time=1000 + n))
    partition = log.partitions[0]
    assert [m.body for m in partition.messages()] == [b"m2", b"m3", b"m4"]
    assert partition.begin_sequence_number == 2 and partition.next_sequence_number == 5
    assert [m.body for m in partition.read(0, 10)] == [b"m2", b"m3", b"m4"]  # dropped: from the oldest kept
    assert [m.body for m in partition.read(3, 1)] == [b"m3"]
    log.add(TelemetryMessage("d", b"late", enqueued_time=1000 + 64))  # m2 and m3 are now older than 60 s
    assert [m.body for m in partition.messages()] == [b"m4", b"late"]


def test_the_byte_bound_keeps_at_least_the_newest_message():
    partition = Partition(0, capacity=100, max_bytes=300)
    for n in range(5):
        partition.append(TelemetryMessage("d", bytes(100), enqueued_time=n))
    assert 1 <= len(partition.messages()) <= 2
    partition.append(TelemetryMessage("d", bytes(1000), enqueued_time=9))
    assert [len(m.body) for m in partition.messages()] == [1000]


def test_start_positions_by_offset_and_time_inclusive_or_not():
    partition = Partition(0, capacity=10)
    stored = [partition.append(TelemetryMessage("d", b"x", enqueued_time=t)) for t in (10.0, 20.0, 30.0)]
    assert partition.after_offset(stored[1].offset, inclusive=False) == 2
    assert partition.after_offset(stored[1].offset, inclusive=True) == 1
    assert partition.after_time(20.0, inclusive=True) == 1 and partition.after_time(20.0, inclusive=False) == 2
    assert partition.after_time(99.0, inclusive=True) == 3  # after everything: the next one to arrive


def test_consumer_groups_default_created_case_insensitive_and_validated():
    log = TelemetryLog()
    assert log.consumer_groups == ["$Default"] and log.consumer_group("$default") == "$Default"
    assert log.create_consumer_group("Analytics") == "Analytics"
    assert log.create_consumer_group("analytics") == "Analytics"
    assert log.consumer_group("ANALYTICS") == "Analytics" and log.consumer_group("other") is None
    for bad in ("", "-x", "a b", "x" * 51, "$Default2"):
        with pytest.raises(ConsumerGroupError):
            log.create_consumer_group(bad)
    for n in range(18):
        log.create_consumer_group(f"g{n}")
    with pytest.raises(ConsumerGroupError, match="at most 20"):
        log.create_consumer_group("one-too-many")


def test_a_stalled_reader_does_not_stop_appends_and_listeners_can_leave():
    partition = Partition(0, capacity=2)
    calls = []
    stop = partition.on_append(lambda: calls.append(1))
    for n in range(5):
        partition.append(TelemetryMessage("d", b"x", enqueued_time=n))
        partition.notify()
    stop()
    partition.notify()
    assert len(calls) == 5 and partition.next_sequence_number == 5
