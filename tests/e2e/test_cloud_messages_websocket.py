"""AMQP over WebSockets on the REST front (/$servicebus/websocket, subprotocol AMQPWSB10): azure-iot-hub's
send_c2d_message with TransportType.AmqpOverWebsocket, which always dials port 443; and a client that
sends text frames or garbage is dropped while others carry on."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import pytest

from emulator import loopback
from emulator.server import EmulatorConfig, ThreadedEmulator
from hubsettings import wellknown
from service.cloud_messages import trust_ca

pytestmark = pytest.mark.e2e
PORTS = (wellknown.MQTT_PORT, 443, 5671)


@pytest.fixture(scope="module")
def emulator():
    try:
        address = loopback.free_loopback_address(PORTS, tries=30, fall_back_to_127_0_0_1=True)
    except PermissionError:
        pytest.skip("binding port 443 needs privileges this machine does not grant")
    except loopback.NoFreeLoopbackAddress as e:
        pytest.skip(str(e))
    config = EmulatorConfig(address=address, rest_port=443, in_memory=True, write_discovery=False)
    with ThreadedEmulator(config) as running:
        yield running


def test_sdk_sends_over_websockets(emulator):
    import uamqp
    from azure.iot.hub import IoTHubRegistryManager
    info = emulator.server.info()
    manager = IoTHubRegistryManager(connection_string=info.service_connection_string,
                                    transport_type=uamqp.TransportType.AmqpOverWebsocket)
    trust_ca(manager, info.ca_file)
    try:
        manager.send_c2d_message(wellknown.DEVICE_ID, "over 443", properties={"messageId": "ws-1", "k": "v"})
    finally:
        manager.amqp_svc_client.disconnect_sync()
    [queued] = emulator.call(lambda: emulator.hub.c2d.take_for_delivery(wellknown.DEVICE_ID))
    assert (queued.body, queued.message_id, queued.properties) == (b"over 443", "ws-1", {"k": "v"})


@pytest.mark.parametrize("frame", ["text", b"GET / HTTP/1.1\r\n\r\n"])
def test_bad_frames_close_that_websocket_only(emulator, frame):
    info = emulator.server.info()
    context = ssl.create_default_context(cafile=info.ca_file)

    async def talk() -> tuple[list, bool]:
        url = f"https://{emulator.server.config.address}:443/$servicebus/websocket"
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url, protocols=("AMQPWSB10",), ssl=context) as socket:
                assert socket.protocol == "AMQPWSB10"
                await (socket.send_str(frame) if isinstance(frame, str) else socket.send_bytes(frame))
                received = [message.data async for message in socket]  # ends when the emulator closes
                return received, socket.closed

    received, closed = asyncio.run(asyncio.wait_for(talk(), 30))
    assert closed and received == []
    test_sdk_sends_over_websockets(emulator)  # everyone else is still served
