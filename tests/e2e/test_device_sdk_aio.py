"""The unmodified asyncio device SDK against a real emulator."""

import asyncio

import pytest
from azure.iot.device import MethodResponse
from azure.iot.device.aio import IoTHubDeviceClient, ProvisioningDeviceClient
from azure.iot.device.exceptions import CredentialError

from hubsettings import derive_device_key, wellknown
from tests.e2e.support import unique_device_id

pytestmark = pytest.mark.e2e


@pytest.fixture
def ca(emulator):
    return emulator.server.certificates.ca_pem()


@pytest.fixture
def device_id(emulator):
    device_id = unique_device_id("aio")
    emulator.call(emulator.hub.create_device, device_id)
    return device_id


@pytest.fixture
async def client(emulator, ca, device_id):
    connection_string = emulator.call(emulator.server.device_connection_string, device_id)
    client = IoTHubDeviceClient.create_from_connection_string(connection_string, server_verification_cert=ca)
    yield client
    await client.shutdown()


async def test_twin_method_and_desired_patch(emulator, client, device_id):
    loop = asyncio.get_running_loop()
    patches: asyncio.Queue = asyncio.Queue()

    async def on_method(request):
        await client.send_method_response(MethodResponse.create_from_method_request(request, 200, {"ok": True}))

    def on_patch(patch):
        loop.call_soon_threadsafe(patches.put_nowait, patch)

    client.on_method_request_received = on_method
    client.on_twin_desired_properties_patch_received = on_patch
    await client.connect()
    await client.patch_twin_reported_properties({"mode": "auto"})
    twin = await client.get_twin()
    assert twin["reported"] == {"mode": "auto", "$version": 2}

    result = await loop.run_in_executor(None, lambda: emulator.invoke_method(device_id, "reboot", None))
    assert (result.status, result.payload) == (200, {"ok": True})

    await loop.run_in_executor(None, emulator.patch_desired, device_id, {"threshold": 7})
    while True:
        patch = await asyncio.wait_for(patches.get(), 30)
        if "threshold" in patch:
            break
    assert patch == {"threshold": 7, "$version": 2}


async def test_wrong_key_is_refused(emulator, ca, device_id):
    wrong = wellknown.device_connection_string(emulator.server.host_name, device_id, wellknown.DEVICE_KEY)
    client = IoTHubDeviceClient.create_from_connection_string(wrong, server_verification_cert=ca)
    try:
        with pytest.raises(CredentialError):
            await client.connect()
    finally:
        await client.shutdown()


async def test_dps_then_hub_connect(emulator, ca):
    registration_id = unique_device_id("aio-dps")
    key = derive_device_key(wellknown.DPS_GROUP_KEY, registration_id)
    provisioning = ProvisioningDeviceClient.create_from_symmetric_key(
        provisioning_host=emulator.server.host_name, registration_id=registration_id,
        id_scope=wellknown.DPS_ID_SCOPE, symmetric_key=key, server_verification_cert=ca)
    result = await provisioning.register()
    assert result.status == "assigned"
    client = IoTHubDeviceClient.create_from_symmetric_key(key, result.registration_state.assigned_hub,
                                                          result.registration_state.device_id,
                                                          server_verification_cert=ca)
    try:
        await client.connect()
        assert (await client.get_twin())["desired"]["$version"] == 1
    finally:
        await client.shutdown()
