"""Cloud-to-device queues in the hub model: IoT Hub's limits, delivery, expiry, feedback, persistence."""

import pytest

from emulator.hub import DeviceNotFound, FakeClock, Hub, MessageTooLarge
from emulator.hub.c2d import (DEFAULT_TTL_SECONDS, FEEDBACK_TTL_SECONDS, MAX_DELIVERY_COUNT, MAX_QUEUE_DEPTH,
                              MAX_TTL_SECONDS, DeviceMaximumQueueDepthExceeded)
from emulator.hub.errors import ArgumentInvalid
from emulator.store import SqliteStore


class RecordingConnections:
    def __init__(self):
        self.pushed: list[str] = []

    def deliver_cloud_messages(self, device_id):
        self.pushed.append(device_id)

    def disconnect_device(self, device_id):
        pass

    def forget_device(self, device_id):
        pass


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def hub(clock, tmp_path):
    hub = Hub("hub.example.test", clock=clock, store=SqliteStore(tmp_path / "hub.sqlite3"))
    hub.create_device("d1")
    return hub


def reopen(hub: Hub, clock, tmp_path) -> Hub:
    hub.close()
    return Hub("hub.example.test", clock=clock, store=SqliteStore(tmp_path / "hub.sqlite3"))


def test_message_waits_with_its_properties_until_taken(hub, clock):
    sent = hub.send_cloud_message("d1", b"hi", message_id="m1", properties={"k": "v"}, correlation_id="c1",
                                  user_id="u1", content_type="text/plain", content_encoding="utf-8", ack="full")
    assert sent.to == "/devices/d1/messages/devicebound"
    assert sent.expiry_time == clock.now + DEFAULT_TTL_SECONDS
    assert sent.device_generation_id == hub.get_device("d1").generation_id
    [taken] = hub.c2d.take_for_delivery("d1")
    assert (taken.body, taken.message_id, taken.properties, taken.correlation_id, taken.user_id) == \
        (b"hi", "m1", {"k": "v"}, "c1", "u1")
    assert taken.delivery_count == 1 and taken.in_flight
    assert hub.c2d.take_for_delivery("d1") == []  # in flight: not handed out twice


def test_unknown_device_is_refused_and_nothing_is_queued(hub):
    with pytest.raises(DeviceNotFound):
        hub.send_cloud_message("nobody", b"x")
    assert hub.c2d.depth("nobody") == 0


def test_fifty_messages_per_device_then_queue_depth_error(hub):
    for i in range(MAX_QUEUE_DEPTH):
        hub.send_cloud_message("d1", b"%d" % i)
    with pytest.raises(DeviceMaximumQueueDepthExceeded) as refused:
        hub.send_cloud_message("d1", b"one too many")
    assert refused.value.error_code == 403004 and refused.value.http_status == 403
    assert hub.c2d.depth("d1") == MAX_QUEUE_DEPTH
    hub.c2d.take_for_delivery("d1", limit=1)  # in flight still counts against the queue
    with pytest.raises(DeviceMaximumQueueDepthExceeded):
        hub.send_cloud_message("d1", b"still full")


def test_64_kb_counts_body_and_properties(hub):
    hub.send_cloud_message("d1", b"x" * (64 * 1024 - 2), properties={"k": ""})
    with pytest.raises(MessageTooLarge):
        hub.send_cloud_message("d1", b"x" * (64 * 1024 - 2), properties={"ab": "c"})
    assert hub.c2d.depth("d1") == 1


def test_bad_ack_value_is_refused(hub):
    with pytest.raises(ArgumentInvalid):
        hub.send_cloud_message("d1", b"x", ack="sometimes")
    assert hub.c2d.depth("d1") == 0


def test_expiry_is_capped_at_two_days_and_expired_messages_leave_with_feedback(hub, clock):
    capped = hub.send_cloud_message("d1", b"late", expiry_time=clock.now + 10 * MAX_TTL_SECONDS, ack="negative")
    assert capped.expiry_time == clock.now + MAX_TTL_SECONDS
    short = hub.send_cloud_message("d1", b"soon", message_id="short", expiry_time=clock.now + 60, ack="full")
    clock.advance(59)
    assert hub.c2d.expire() == 0
    clock.advance(1)
    hub.expire_due()  # the server's housekeeping tick
    assert hub.c2d.depth("d1") == 1
    batch = hub.c2d.take_feedback()
    assert [r["statusCode"] for r in batch.records] == ["Expired"]
    assert batch.records[0]["originalMessageId"] == short.message_id
    assert batch.records[0]["description"] == "Message expired"


def test_expired_message_cannot_be_completed_afterwards(hub, clock):
    sent = hub.send_cloud_message("d1", b"x", expiry_time=clock.now + 60)
    hub.c2d.take_for_delivery("d1")
    clock.advance(61)
    hub.c2d.expire()
    assert hub.c2d.complete("d1", sent.lock_token) is False


@pytest.mark.parametrize("ack, outcome, expected", [
    ("none", "complete", []), ("positive", "complete", ["Success"]), ("negative", "complete", []),
    ("full", "complete", ["Success"]), ("positive", "reject", []), ("negative", "reject", ["Rejected"]),
    ("full", "reject", ["Rejected"]),
])
def test_feedback_follows_the_ack_setting(hub, ack, outcome, expected):
    sent = hub.send_cloud_message("d1", b"x", ack=ack)
    hub.c2d.take_for_delivery("d1")
    assert getattr(hub.c2d, outcome)("d1", sent.lock_token)
    batch = hub.c2d.take_feedback()
    assert ([r["statusCode"] for r in batch.records] if batch else []) == expected


def test_feedback_record_shape(hub, clock):
    sent = hub.send_cloud_message("d1", b"x", message_id="orig-1", ack="positive")
    hub.c2d.take_for_delivery("d1")
    hub.c2d.complete("d1", sent.lock_token)
    [record] = hub.c2d.take_feedback().records
    assert record == {"originalMessageId": "orig-1", "deviceId": "d1", "statusCode": "Success",
                      "description": "Success", "enqueuedTimeUtc": "2023-11-14T22:13:20.000000Z",
                      "deviceGenerationId": hub.get_device("d1").generation_id}


def test_release_returns_to_queue_until_the_delivery_count_is_spent(hub):
    sent = hub.send_cloud_message("d1", b"x", ack="negative")
    for attempt in range(1, MAX_DELIVERY_COUNT + 1):
        [taken] = hub.c2d.take_for_delivery("d1")
        assert taken.delivery_count == attempt
        hub.c2d.release("d1", sent.lock_token)
    assert hub.c2d.depth("d1") == 0
    assert [r["statusCode"] for r in hub.c2d.take_feedback().records] == ["DeliveryCountExceeded"]


def test_feedback_batches_are_offered_again_until_accepted(hub):
    listened: list[int] = []
    stop = hub.c2d.on_feedback(lambda: listened.append(1))
    for _ in range(3):
        sent = hub.send_cloud_message("d1", b"x", ack="positive")
        hub.c2d.take_for_delivery("d1")
        hub.c2d.complete("d1", sent.lock_token)
    assert len(listened) == 3
    first = hub.c2d.take_feedback(limit=2)
    second = hub.c2d.take_feedback(limit=2)
    assert len(first.records) == 2 and len(second.records) == 1
    assert hub.c2d.take_feedback() is None  # everything is in flight
    hub.c2d.release_feedback(first.batch_id)
    assert len(listened) == 4
    again = hub.c2d.take_feedback()
    assert again.records == first.records
    hub.c2d.complete_feedback(again.batch_id)
    hub.c2d.complete_feedback(second.batch_id)
    assert hub.c2d.feedback_waiting() == 0
    stop()
    sent = hub.send_cloud_message("d1", b"x", ack="positive")
    hub.c2d.take_for_delivery("d1")
    hub.c2d.complete("d1", sent.lock_token)
    assert len(listened) == 4


def test_unclaimed_feedback_expires(hub, clock):
    sent = hub.send_cloud_message("d1", b"x", ack="positive")
    hub.c2d.take_for_delivery("d1")
    hub.c2d.complete("d1", sent.lock_token)
    clock.advance(FEEDBACK_TTL_SECONDS + 1)
    hub.c2d.expire()
    assert hub.c2d.feedback_waiting() == 0


def test_purge_and_device_deletion_empty_the_queue(hub):
    for _ in range(3):
        hub.send_cloud_message("d1", b"x", ack="full")
    assert hub.purge_cloud_messages("d1") == 3
    assert hub.c2d.take_feedback() is None  # a purge gives no feedback
    hub.send_cloud_message("d1", b"x")
    hub.delete_device("d1")
    hub.create_device("d1")
    assert hub.c2d.depth("d1") == 0
    with pytest.raises(DeviceNotFound):
        hub.purge_cloud_messages("ghost")


def test_connected_device_is_told_at_once(hub):
    connections = RecordingConnections()
    hub.attach_connections(connections)
    hub.send_cloud_message("d1", b"offline")
    assert connections.pushed == []
    hub.device_connected("d1")
    hub.send_cloud_message("d1", b"online")
    assert connections.pushed == ["d1"]


def test_messages_and_feedback_survive_a_restart_in_order(hub, clock, tmp_path):
    first = hub.send_cloud_message("d1", b"one", message_id="m1", properties={"k": "v"}, ack="full",
                                   expiry_time=clock.now + 600)
    hub.send_cloud_message("d1", b"two", message_id="m2")
    delivered = hub.send_cloud_message("d1", b"three", message_id="m3", ack="positive")
    hub.c2d.take_for_delivery("d1")  # all three in flight when the emulator stops
    hub.c2d.complete("d1", delivered.lock_token)
    hub = reopen(hub, clock, tmp_path)
    taken = hub.c2d.take_for_delivery("d1")
    assert [m.message_id for m in taken] == ["m1", "m2"]  # nothing is in flight on a fresh hub
    assert taken[0].body == b"one" and taken[0].properties == {"k": "v"} and taken[0].ack == "full"
    assert taken[0].expiry_time == first.expiry_time
    assert [r["originalMessageId"] for r in hub.c2d.take_feedback().records] == ["m3"]
    clock.advance(601)  # expiries are restored too
    hub.c2d.expire()
    assert [m.message_id for m in hub.c2d.in_flight("d1")] == ["m2"]
    hub.close()
