"""A device survives an emulator restart (`python -m emulator` subprocess, same data dir): it
reconnects by itself, its twin is intact, and it gets no spurious desired patch."""

import threading

import pytest
from azure.iot.device import IoTHubDeviceClient

from emulator.hub import Hub
from emulator.store import SqliteStore
from hubsettings import wellknown
from tests.e2e.support import wait_for

pytestmark = pytest.mark.e2e


def test_reconnect_after_restart_keeps_the_twin_and_sends_no_spurious_patch(emulator_process):
    # Seed the data dir as a previous run would have left it: desired properties at $version 3.
    seeded = Hub(emulator_process.host_name, store=SqliteStore.in_directory(emulator_process.data_dir))
    seeded.register_well_known()
    seeded.patch_desired(wellknown.DEVICE_ID, {"interval": 10})
    seeded.patch_desired(wellknown.DEVICE_ID, {"mode": "eco"})
    seeded.close()

    emulator_process.start()
    connection_string = wellknown.device_connection_string(emulator_process.host_name)
    client = IoTHubDeviceClient.create_from_connection_string(
        connection_string, server_verification_cert=emulator_process.ca_pem, connection_retry_interval=1)
    patches = []
    first_delivery = threading.Event()

    def on_patch(patch):
        patches.append(patch)
        first_delivery.set()

    client.on_twin_desired_properties_patch_received = on_patch
    try:
        client.connect()
        assert client.get_twin()["desired"] == {"interval": 10, "mode": "eco", "$version": 3}
        client.patch_twin_reported_properties({"firmware": "2.0"})
        assert first_delivery.wait(30)  # the SDK hands over the desired doc once after connecting
        delivered_before_restart = len(patches)

        assert emulator_process.stop() == 0
        wait_for(lambda: not client.connected, what="the client to notice the emulator went away")
        emulator_process.start()
        wait_for(lambda: client.connected, timeout=60, what="the client to reconnect by itself")

        twin = client.get_twin()
        assert twin["desired"] == {"interval": 10, "mode": "eco", "$version": 3}
        assert twin["reported"] == {"firmware": "2.0", "$version": 2}
        client.patch_twin_reported_properties({"firmware": "2.1"})
        assert client.get_twin()["reported"]["$version"] == 3
        assert len(patches) == delivered_before_restart
    finally:
        client.shutdown()
    assert emulator_process.stop() == 0
    assert not emulator_process.discovery_file.exists()  # removed on a clean stop
