"""Device-to-cloud messages the hub PUBACKed survive an emulator SIGKILL: after a restart on the same data
directory an Event Hubs consumer (azure-eventhub) reads every one from "-1", and the partition's sequence
numbers and offsets continue where they were (a consumer's checkpoint stays valid)."""

from __future__ import annotations

import pytest

from emulator.hub.telemetry import partition_of
from emulator.testing import EmulatorProcess
from hubsettings import wellknown
from mqttcodec import Publish
from tests.reliability.support import RawDevice

from .test_event_hub import consumer, read

pytestmark = pytest.mark.e2e
BEFORE_KILL, AFTER_RESTART = 40, 5
DEVICE_ID, DEVICE_KEY = wellknown.DEVICE_ID, wellknown.DEVICE_KEY


async def send_acknowledged(emulator: EmulatorProcess, bodies: list[str]) -> None:
    """Publish each body at QoS 1 and wait for its PUBACK before the next."""
    device = await RawDevice.connected(emulator, DEVICE_ID, DEVICE_KEY, subscribe=(), clean_session=True)
    try:
        for body in bodies:
            packet_id = device.packet_id()
            device.send(Publish(f"devices/{DEVICE_ID}/messages/events/n={body}", body.encode(), 1, packet_id))
            assert await device.acknowledged(packet_id), f"no PUBACK for {body}"
    finally:
        await device.close()


async def test_acknowledged_telemetry_survives_sigkill_and_numbering_continues(tmp_path):
    emulator = EmulatorProcess(data_dir=tmp_path / "data")
    emulator.start()
    try:
        await send_acknowledged(emulator, [f"before-{n}" for n in range(BEFORE_KILL)])
        emulator.kill()  # SIGKILL: no shutdown runs, only what was committed survives

        emulator.start()
        await send_acknowledged(emulator, [f"after-{n}" for n in range(AFTER_RESTART)])
        total = BEFORE_KILL + AFTER_RESTART
        events = read(consumer(emulator), total, device_id=DEVICE_ID, timeout=60,
                      partition_id=str(partition_of(DEVICE_ID)), starting_position="-1")
    finally:
        emulator.close()

    bodies = [event.body_as_str() for event in events]
    assert bodies == [f"before-{n}" for n in range(BEFORE_KILL)] + [f"after-{n}" for n in range(AFTER_RESTART)]
    assert [event.properties[b"n"].decode() for event in events] == bodies  # properties kept too
    # Numbering continues across the kill: nothing reused, nothing skipped (only this device sends here).
    assert [event.sequence_number for event in events] == list(range(total))
    offsets = [int(event.offset) for event in events]
    assert offsets == sorted(set(offsets))
