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
