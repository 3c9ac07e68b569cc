"""A websockets=True device (MQTT over WSS, port 443 is hard-coded in the SDK) and the service SDK
with a port-less HostName, both against an emulator whose REST front listens on 127.0.0.X:443."""

from __future__ import annotations

import threading

import pytest
from azure.iot.device import IoTHubDeviceClient, MethodResponse
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod, Twin, TwinProperties

from emulator import loopback
from emulator.server import EmulatorConfig, ThreadedEmulator
from hubsettings import wellknown
from tests.e2e.support import unique_device_id, wait_for

pytestmark = pytest.mark.e2e

WAIT = 30.0


def _free_address_for_443_and_8883() -> str:
    try:
        return loopback.free_loopback_address((8883, 443), tries=30)
    except PermissionError:
        pytest.skip("binding port 443 is not permitted here (needs root or CAP_NET_BIND_SERVICE)")
    except loopback.NoFreeLoopbackAddress as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def emulator_on_443(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("emulator443")
    config = EmulatorConfig(address=_free_address_for_443_and_8883(), data_dir=data_dir,
                            discovery_file=data_dir / "discovery.json", rest_port=443)
    with ThreadedEmulator(config) as running:
        yield running


def test_websocket_device_and_port_less_service_connection_string(emulator_on_443):
    server = emulator_on_443.server
    ca_file, ca_pem = str(server.certificates.ca_cert), server.certificates.ca_pem()
    service_string = wellknown.service_connection_string(server.host_name, 443)
    assert ":443" not in service_string  # the port is implied, as with a real hub
    registry = IoTHubRegistryManager.from_connection_string(service_string)
    registry.protocol.config.connection.verify = ca_file

    device_id = unique_device_id("wss")
    registry.create_device_with_sas(device_id, None, None, "enabled")
    device_string = emulator_on_443.call(server.device_connection_string, device_id)
    client = IoTHubDeviceClient.create_from_connection_string(device_string, server_verification_cert=ca_pem,
                                                              websockets=True)
    patches, patched = [], threading.Event()

    def on_method(request):
        client.send_method_response(MethodResponse.create_from_method_request(request, 200, {"via": "wss"}))

    def on_patch(patch):
        patches.append(patch)
        patched.set()

    client.on_method_request_received = on_method
    client.on_twin_desired_properties_patch_received = on_patch
    try:
        client.connect()
        assert emulator_on_443.call(server.hub.is_online, device_id)
        assert emulator_on_443.call(lambda: server.front.live_devices()).count(device_id) == 1

        client.patch_twin_reported_properties({"transport": "websockets"})
        twin = registry.get_twin(device_id)
        assert twin.properties.reported["transport"] == "websockets"

        result = registry.invoke_device_method(device_id, CloudToDeviceMethod(method_name="ping", payload=None))
        assert (result.status, result.payload) == (200, {"via": "wss"})

        registry.update_twin(device_id, Twin(properties=TwinProperties(desired={"interval": 3})), "*")
        assert patched.wait(WAIT)
        assert patches[-1]["interval"] == 3
    finally:
        client.shutdown()
    wait_for(lambda: not emulator_on_443.call(server.hub.is_online, device_id), timeout=WAIT,
             what="the websocket device to go offline")
