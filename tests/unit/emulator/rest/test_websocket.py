"""MQTT over WebSockets on the REST app: the same session and device front as the TLS listener."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from mqttcodec import Connack, Connect, PacketReader, Publish, Suback, Subscribe, encode
from emulator.mqtt.device_front import DeviceFront
from emulator.rest import create_app
from hubsettings import wellknown
from hubsettings.sas import build_token

from .conftest import API, token

WS_PATH = "/$iothub/websocket"


def device_connect(clock, key: str = wellknown.DEVICE_KEY) -> Connect:
    password = build_token(f"localhost/devices/{wellknown.DEVICE_ID}", key, now=clock())
    return Connect(client_id=wellknown.DEVICE_ID, username=f"localhost/{wellknown.DEVICE_ID}/?api-version=2021-04-12",
                   password=password.encode(), clean_session=False)


class WsDevice:
    def __init__(self, socket):
        self.socket = socket
        self.reader = PacketReader()
        self.pending: list = []

    async def send(self, packet) -> None:
        await self.socket.send_bytes(encode(packet))

    async def next_packet(self):
        while not self.pending:
            message = await asyncio.wait_for(self.socket.receive(), 10)
            if message.type != WSMsgType.BINARY:
                return message
            self.pending += self.reader.feed(message.data)
        return self.pending.pop(0)


@pytest.fixture
async def ws_client(hub):
    front = DeviceFront(hub)
    client = TestClient(TestServer(create_app(hub, hub.jobs, device_front=front)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def test_device_connects_and_answers_a_method_over_websocket(ws_client, hub, clock):
    socket = await ws_client.ws_connect(WS_PATH, protocols=("mqtt",))
    assert socket.protocol == "mqtt"
    device = WsDevice(socket)
    await device.send(device_connect(clock))
    connack = await device.next_packet()
    assert connack == Connack(session_present=False, return_code=0)
    assert hub.is_online(wellknown.DEVICE_ID)
    await device.send(Subscribe(1, (("$iothub/methods/POST/#", 1),)))  # methods go to subscribers only
    assert await device.next_packet() == Suback(1, (1,))

    invoke = asyncio.ensure_future(ws_client.post(
        f"/twins/{wellknown.DEVICE_ID}/methods?{API}", json={"methodName": "reboot", "payload": {"delay": 0}},
        headers={"Authorization": token(now=clock())}))
    request = await device.next_packet()
    assert isinstance(request, Publish) and request.topic.startswith("$iothub/methods/POST/reboot/?$rid=")
    rid = request.topic.split("$rid=")[1]
    await device.send(Publish(f"$iothub/methods/res/200/?$rid={rid}", b'{"rebooting": true}', qos=0))
    response = await asyncio.wait_for(invoke, 10)
    assert await response.json() == {"status": 200, "payload": {"rebooting": True}}

    await socket.close()
    for _ in range(200):
        if not hub.is_online(wellknown.DEVICE_ID):
            break
        await asyncio.sleep(0.01)
    assert not hub.is_online(wellknown.DEVICE_ID)


async def test_bad_credentials_get_connack_5_and_the_socket_closes(ws_client, hub, clock):
    socket = await ws_client.ws_connect(WS_PATH, protocols=("mqtt",))
    device = WsDevice(socket)
    await device.send(device_connect(clock, key=wellknown.POLICIES["service"][0]))
    assert await device.next_packet() == Connack(session_present=False, return_code=5)
    closing = await device.next_packet()
    assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    assert not hub.is_online(wellknown.DEVICE_ID)


async def test_text_frames_end_the_connection(ws_client, clock):
    socket = await ws_client.ws_connect(WS_PATH, protocols=("mqtt",))
    await socket.send_str("hello")
    message = await asyncio.wait_for(socket.receive(), 10)
    assert message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)


async def test_websocket_route_needs_no_api_version_but_rest_routes_do(ws_client, clock):
    plain_get = await ws_client.get(WS_PATH)  # not an upgrade: refused, but not as an api-version error
    assert plain_get.status != 200
    assert "InvalidProtocolVersion" not in await plain_get.text()


async def test_stopping_the_server_ends_live_websocket_sessions(hub, clock):
    front = DeviceFront(hub)
    client = TestClient(TestServer(create_app(hub, None, device_front=front)))
    await client.start_server()
    socket = await client.ws_connect(WS_PATH, protocols=("mqtt",))
    device = WsDevice(socket)
    await device.send(device_connect(clock))
    assert (await device.next_packet()).return_code == 0
    assert hub.is_online(wellknown.DEVICE_ID)
    await asyncio.wait_for(client.close(), 10)
    assert not hub.is_online(wellknown.DEVICE_ID)
