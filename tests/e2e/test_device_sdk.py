"""The unmodified synchronous device SDK against a real emulator (TLS socket on 127.0.0.X:8883)."""

import threading

import pytest
from azure.iot.device import IoTHubDeviceClient, MethodResponse, ProvisioningDeviceClient
from azure.iot.device.exceptions import CredentialError

from hubsettings import derive_device_key, wellknown
from tests.e2e.support import unique_device_id, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def ca(emulator):
    return emulator.server.certificates.ca_pem()


@pytest.fixture
def device_id(emulator):
    device_id = unique_device_id()
    emulator.call(emulator.hub.create_device, device_id)
    return device_id


@pytest.fixture
def make_client(emulator, ca):
    clients = []

    def make(device_id, connection_string=None, **kwargs):
        connection_string = connection_string or emulator.call(emulator.server.device_connection_string, device_id)
        client = IoTHubDeviceClient.create_from_connection_string(connection_string, server_verification_cert=ca,
                                                                  **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown()


def test_well_known_device_connects_with_the_well_known_connection_string(emulator, make_client):
    client = make_client(wellknown.DEVICE_ID, wellknown.device_connection_string(emulator.server.host_name))
    client.connect()
    assert client.get_twin()["desired"]["$version"] >= 1


def test_twin_get_and_reported_patch(emulator, make_client, device_id):
    client = make_client(device_id)
    client.connect()
    assert client.get_twin() == {"desired": {"$version": 1}, "reported": {"$version": 1}}
    client.patch_twin_reported_properties({"firmware": "1.2", "door": {"locked": True}})
    client.patch_twin_reported_properties({"door": None})
    assert client.get_twin()["reported"] == {"firmware": "1.2", "$version": 3}
    service_view = emulator.get_twin(device_id)
    assert service_view["properties"]["reported"]["firmware"] == "1.2"
    assert service_view["connectionState"] == "Connected"


def test_method_is_received_and_answered(emulator, make_client, device_id):
    client = make_client(device_id)

    def on_method(request):
        payload = {"method": request.name, "got": request.payload}
        client.send_method_response(MethodResponse.create_from_method_request(request, 200, payload))

    client.on_method_request_received = on_method
    client.connect()
    result = emulator.invoke_method(device_id, "lockDoor", {"door": "front"}, response_timeout=30)
    assert result.status == 200
    assert result.payload == {"method": "lockDoor", "got": {"door": "front"}}


def test_desired_patch_is_delivered_with_its_version(emulator, make_client, device_id):
    client = make_client(device_id)
    patches = []
    received = threading.Event()

    def on_patch(patch):
        patches.append(patch)
        if patch.get("telemetryInterval") == 5:
            received.set()

    client.on_twin_desired_properties_patch_received = on_patch
    client.connect()
    emulator.patch_desired(device_id, {"telemetryInterval": 5})
    assert received.wait(30)
    assert patches[-1] == {"telemetryInterval": 5, "$version": 2}
    assert client.get_twin()["desired"] == {"telemetryInterval": 5, "$version": 2}


def test_telemetry_reaches_the_hub(emulator, make_client, device_id):
    client = make_client(device_id)
    client.connect()
    client.send_message('{"temperature": 21.5}')
    messages = wait_for(lambda: emulator.call(emulator.hub.telemetry.messages, device_id), what="telemetry")
    assert messages[0].body == b'{"temperature": 21.5}'


def test_wrong_key_is_refused(emulator, make_client, device_id):
    wrong = wellknown.device_connection_string(emulator.server.host_name, device_id, wellknown.DEVICE_KEY)
    client = make_client(device_id, wrong)
    with pytest.raises(CredentialError):
        client.connect()


def test_disabled_device_is_refused(emulator, make_client, device_id):
    emulator.call(emulator.hub.update_device, device_id, status="disabled")
    client = make_client(device_id)
    with pytest.raises(CredentialError):
        client.connect()


def test_token_renewal_reconnects_and_keeps_working(emulator, make_client, device_id):
    # The SDK renews 120 s before expiry by reconnecting with a new token: a 123 s token renews in ~3 s.
    client = make_client(device_id, sastoken_ttl=123)
    client.connect()
    wait_for(lambda: emulator.call(lambda: emulator.hub.connections_total[device_id]) >= 2, timeout=60,
             what="a reconnect with a renewed token")
    client.patch_twin_reported_properties({"after": "renewal"})
    assert client.get_twin()["reported"]["after"] == "renewal"


def test_dps_provisioning_with_the_group_key_then_hub_connect(emulator, ca, make_client):
    registration_id = unique_device_id("dps")
    key = derive_device_key(wellknown.DPS_GROUP_KEY, registration_id)
    provisioning = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=emulator.server.host_name, registration_id=registration_id,
        id_scope=wellknown.DPS_ID_SCOPE, symmetric_key=key, server_verification_cert=ca)
    result = provisioning.register()
    assert result.status == "assigned"
    assert result.registration_state.assigned_hub == emulator.server.host_name
    assert result.registration_state.device_id == registration_id
    client = IoTHubDeviceClient.create_from_symmetric_key(key, result.registration_state.assigned_hub,
                                                          registration_id, server_verification_cert=ca)
    try:
        client.connect()
        assert client.get_twin()["reported"]["$version"] == 1
    finally:
        client.shutdown()


def test_dps_with_a_wrong_key_is_refused(emulator, ca):
    provisioning = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=emulator.server.host_name, registration_id=unique_device_id("dps"),
        id_scope=wellknown.DPS_ID_SCOPE, symmetric_key=wellknown.DPS_GROUP_KEY, server_verification_cert=ca)
    with pytest.raises(CredentialError):
        provisioning.register()
