"""A websockets=True device (MQTT over WSS: the SDK always dials port 443) and the service SDK.

On 443 (root, CAP_NET_BIND_SERVICE, or net.ipv4.ip_unprivileged_port_start <= 443) the device dials the
emulator directly and the service connection string carries no port, as with a real hub. On the fallback
port (this user may not bind 443; forced here by taking 443 first where it may) the device gets there
through an HTTP CONNECT proxy that maps 443 to the fallback port, and the service string carries the port.
"""

from __future__ import annotations

import contextlib
import threading

import pytest
from azure.iot.device import IoTHubDeviceClient, MethodResponse, ProxyOptions
from azure.iot.hub import IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod, Twin, TwinProperties

from emulator import loopback
from emulator.server import ThreadedEmulator
from hubsettings import wellknown
from tests.e2e.conftest import isolated_config
from tests.e2e.support import PortMappingProxy, something_listening_on, unique_device_id, wait_for

pytestmark = pytest.mark.e2e

WAIT = 30.0


@contextlib.contextmanager
def emulator_at(tmp_path_factory, *, take_443_first: bool):
    """An emulator with default ports on its own address; take_443_first makes 443 unavailable to it."""
    config = isolated_config(tmp_path_factory, "emulator-wss")
    address = config.address
    with contextlib.ExitStack() as stack:
        if take_443_first and loopback.may_bind(wellknown.REST_PORT):
            stack.enter_context(something_listening_on(address, wellknown.REST_PORT))
        yield stack.enter_context(ThreadedEmulator(config))


@pytest.fixture(scope="module")
def emulator_on_443(tmp_path_factory):
    if not loopback.may_bind(wellknown.REST_PORT):
        pytest.skip(f"this user may not bind port 443 (allow it with `{loopback.how_to_allow_port_443()}`); "
                    "test_websocket_device_on_the_fallback_port covers MQTT over WebSockets meanwhile")
    with emulator_at(tmp_path_factory, take_443_first=False) as running:
        assert running.server.rest_port == 443
        yield running


@pytest.fixture(scope="module")
def emulator_on_fallback(tmp_path_factory):
    with emulator_at(tmp_path_factory, take_443_first=True) as running:
        assert running.server.rest_port == wellknown.REST_FALLBACK_PORT
        assert running.server.rest_port_note
        yield running


def exercise_websocket_device(emulator: ThreadedEmulator, service_string: str, **device_options) -> None:
    """Create a device with the service SDK, connect it over MQTT/WSS, and do reported, method and desired."""
    server = emulator.server
    ca_file, ca_pem = str(server.certificates.ca_cert), server.certificates.ca_pem()
    registry = IoTHubRegistryManager.from_connection_string(service_string)
    registry.protocol.config.connection.verify = ca_file

    device_id = unique_device_id("wss")
    registry.create_device_with_sas(device_id, None, None, "enabled")
    device_string = emulator.call(server.device_connection_string, device_id)
    client = IoTHubDeviceClient.create_from_connection_string(device_string, server_verification_cert=ca_pem,
                                                              websockets=True, **device_options)
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
        assert emulator.call(server.hub.is_online, device_id)
        assert emulator.call(lambda: server.front.live_devices()).count(device_id) == 1

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
    wait_for(lambda: not emulator.call(server.hub.is_online, device_id), timeout=WAIT,
             what="the websocket device to go offline")


def test_websocket_device_and_port_less_service_connection_string(emulator_on_443):
    server = emulator_on_443.server
    service_string = server.info().service_connection_string
    assert service_string.startswith(f"HostName={server.host_name};")  # no port, as with a real hub
    exercise_websocket_device(emulator_on_443, service_string)


def test_websocket_device_on_the_fallback_port(emulator_on_fallback):
    server = emulator_on_fallback.server
    service_string = server.info().service_connection_string
    assert service_string.startswith(f"HostName={server.host_name}:{wellknown.REST_FALLBACK_PORT};")
    proxy = PortMappingProxy(443, server.config.address, server.rest_port)
    try:
        exercise_websocket_device(emulator_on_fallback, service_string, proxy_options=ProxyOptions(
            proxy_type="HTTP", proxy_addr="127.0.0.1", proxy_port=proxy.port))
    finally:
        proxy.close()
    assert proxy.targets and set(proxy.targets) == {f"{server.host_name}:443"}  # the SDK dialled 443
