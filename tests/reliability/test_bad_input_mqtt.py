"""Bad input on the device port (MQTT over TLS on 8883), through a real TLS socket to the real device
front: random and truncated bytes before and after CONNECT, IoT Hub topics with garbage in them,
oversized packets and payloads; and garbage over MQTT-over-WebSockets on the REST port. The emulator
drops or answers the offender, never crashes, never logs a traceback (the module's emulator fixture
checks its log), and keeps serving everyone else.

The codec and session alone are fuzzed much harder, without sockets, in tests/unit/emulator/mqtt.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqttcodec import Connack, PacketReader, Publish, encode
from hubsettings import wellknown
from tests.unit.mqttcodec.test_fuzz import mutated_streams

from .support import RawDevice, device_connect, device_token, reply_status

FUZZ = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SOCKET_WAIT = 20.0


class TlsPeer:
    """A blocking TLS client for the fuzz runs (hypothesis drives sync functions)."""

    def __init__(self, emulator):
        context = ssl.create_default_context(cadata=emulator.ca_pem)
        raw = socket.create_connection((emulator.address, wellknown.MQTT_PORT), timeout=SOCKET_WAIT)
        self.sock = context.wrap_socket(raw, server_hostname=emulator.host_name)
        self.reader = PacketReader(1024 * 1024)

    def send(self, data: bytes) -> bool:
        """False when the server has already closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except (ConnectionError, ssl.SSLError, OSError):
            return False

    def read_packets(self, timeout: float) -> tuple[list, bool]:
        """(packets received within timeout, whether the server closed the connection)."""
        self.sock.settimeout(timeout)
        packets = []
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return packets, True
                packets += self.reader.feed(data)
        except (socket.timeout, TimeoutError):
            return packets, False
        except (ConnectionError, ssl.SSLError, OSError):
            return packets, True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def connect_bytes(emulator, device_id: str, key: str) -> bytes:
    token = device_token(emulator.host_name, device_id, key)
    return encode(device_connect(emulator.host_name, device_id, token))


def assert_still_serving(emulator, device_id: str, key: str) -> None:
    """A well-behaved device connects and gets its twin: the emulator is alive and answering."""
    peer = TlsPeer(emulator)
    try:
        peer.send(connect_bytes(emulator, device_id, key) + encode(Publish("$iothub/twin/GET/?$rid=alive", b" ", 1, 1)))
        packets: list = []
        for _ in range(50):
            new, closed = peer.read_packets(0.2)
            packets += new
            if any(isinstance(p, Publish) and "$rid=alive" in p.topic for p in packets) or closed:
                break
        assert isinstance(packets[0], Connack) and packets[0].return_code == 0
        assert any(isinstance(p, Publish) and p.topic.startswith("$iothub/twin/res/200/") for p in packets)
    finally:
        peer.close()


@pytest.fixture(scope="module")
def watcher(emulator):
    return emulator.add_device("watcher")


@FUZZ
@given(st.one_of(st.binary(min_size=1, max_size=600), mutated_streams()))
def test_random_and_mangled_bytes_before_connect(emulator, watcher, data):
    peer = TlsPeer(emulator)
    try:
        if peer.send(data):
            packets, _ = peer.read_packets(0.05)
            # Garbage never gets a session: at most a refusal.
            assert all(isinstance(p, Connack) and p.return_code != 0 for p in packets), packets
    finally:
        peer.close()


def _hub_topic(device_id: str):
    rid = st.text("abcdef0123456789-", min_size=0, max_size=12)
    junk = st.text(max_size=40)
    return st.one_of(
        st.builds(lambda r: f"$iothub/twin/GET/?$rid={r}", rid),
        st.builds(lambda r: f"$iothub/twin/PATCH/properties/reported/?$rid={r}", rid),
        st.builds(lambda s, r: f"$iothub/methods/res/{s}/?$rid={r}", st.one_of(st.integers(-999, 9999).map(str), junk), rid),
        st.builds(lambda props: f"devices/{device_id}/messages/events/{props}", junk),
        st.builds(lambda j: f"$iothub/{j}", junk),
        junk.filter(bool),
    ).filter(lambda topic: "\x00" not in topic and "+" not in topic and "#" not in topic)


_json_ish = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                         lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
                         max_leaves=10)
_payloads = st.one_of(st.binary(max_size=200), _json_ish.map(lambda v: json.dumps(v).encode()),
                      st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
                      st.integers(1, 3000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth))


@FUZZ
@given(st.data())
def test_garbage_on_iothub_topics_after_a_good_connect(emulator, watcher, data):
    """Authenticated devices sending nonsense: every twin request still gets an answer (or the
    connection is dropped for a topic violation), and nothing is ever left unanswered or crashed."""
    device_id, key = emulator.add_device("fuzz")
    peer = TlsPeer(emulator)
    try:
        publishes = data.draw(st.lists(st.tuples(_hub_topic(device_id), _payloads, st.integers(0, 1)),
                                       min_size=1, max_size=5))
        stream = connect_bytes(emulator, device_id, key)
        for packet_id, (topic, payload, qos) in enumerate(publishes, start=1):
            stream += encode(Publish(topic, payload, qos, packet_id if qos else None))
        stream += encode(Publish("$iothub/twin/GET/?$rid=final", b" ", 1, 999))
        peer.send(stream)
        packets: list = []
        closed = False
        deadline = time.monotonic() + SOCKET_WAIT
        while not closed and not any(isinstance(p, Publish) and "$rid=final" in p.topic for p in packets):
            assert time.monotonic() < deadline, f"no answer and no close; received {packets}"
            new, closed = peer.read_packets(0.2)
            packets += new
        assert isinstance(packets[0], Connack) and packets[0].return_code == 0
    finally:
        peer.close()


def test_the_emulator_still_serves_after_the_fuzz_runs(emulator, watcher):
    assert_still_serving(emulator, *watcher)


def test_plaintext_and_truncated_connects_are_dropped(emulator, watcher):
    device_id, key = watcher
    # Plain MQTT on the TLS port: the handshake fails and the server hangs up (perhaps after a TLS alert).
    with socket.create_connection((emulator.address, wellknown.MQTT_PORT), timeout=SOCKET_WAIT) as raw:
        raw.sendall(connect_bytes(emulator, device_id, key))
        hung_up = False
        try:
            while raw.recv(1024):
                pass
            hung_up = True
        except ConnectionResetError:
            hung_up = True
        assert hung_up  # a socket.timeout above would mean the server kept the connection open
    # A CONNECT cut short, then the client goes away.
    whole = connect_bytes(emulator, device_id, key)
    for cut in (1, 2, len(whole) // 2, len(whole) - 1):
        peer = TlsPeer(emulator)
        peer.send(whole[:cut])
        peer.close()
    assert_still_serving(emulator, device_id, key)


async def test_an_oversized_packet_drops_only_its_sender(emulator):
    big_id, big_key = emulator.add_device("big")
    other_id, other_key = emulator.add_device("bystander")
    offender = await RawDevice.connected(emulator, big_id, big_key)
    bystander = await RawDevice.connected(emulator, other_id, other_key)
    try:
        # 300 KB: over IoT Hub's 256 KB message limit (the emulator refuses packets over 257 KB).
        offender.publish(f"devices/{big_id}/messages/events/", b"x" * 300 * 1024)
        assert await offender.wait_closed()
        rid = bystander.twin_get()
        reply = await bystander.expect_reply(rid)
        assert reply is not None and reply_status(reply) == 200
    finally:
        await offender.close()
        await bystander.close()


async def test_a_header_announcing_a_huge_packet_is_refused_before_it_arrives(emulator):
    device_id, key = emulator.add_device()
    device = await RawDevice.connected(emulator, device_id, key)
    try:
        # PUBLISH with remaining length 268,435,455 (the MQTT maximum): refused from the header alone.
        device.send_raw(b"\x30\xff\xff\xff\x7f" + b"x" * 1000)
        assert await device.wait_closed()
    finally:
        await device.close()


async def test_a_reported_patch_beyond_32_kb_is_refused_with_413_and_changes_nothing(emulator):
    device_id, key = emulator.add_device()
    device = await RawDevice.connected(emulator, device_id, key)
    try:
        rid = device.report({"small": 1})
        assert reply_status(await device.expect_reply(rid)) == 204
        rid = device.report({"big": "x" * (33 * 1024)})
        reply = await device.expect_reply(rid)
        assert reply_status(reply) == 413
        assert json.loads(reply.payload)["errorCode"] == 413002
        # Growing past the limit patch by patch is refused too.
        for index in range(3):
            rid = device.report({f"part{index}": "y" * (12 * 1024)})
            statuses = reply_status(await device.expect_reply(rid))
        assert statuses == 413
        twin = emulator.threaded.get_twin(device_id)
        reported = twin["properties"]["reported"]
        assert "big" not in reported and "part2" not in reported and reported["small"] == 1
        rid = device.twin_get()  # and the connection is still fine
        assert reply_status(await device.expect_reply(rid)) == 200
    finally:
        await device.close()


async def test_a_method_request_over_128_kb_is_refused_and_never_reaches_the_device(emulator):
    device_id, key = emulator.add_device()
    device = await RawDevice.connected(emulator, device_id, key)
    try:
        response = await asyncio.get_running_loop().run_in_executor(None, lambda: emulator.rest().call(
            "POST", f"/twins/{device_id}/methods",
            json_body={"methodName": "upload", "payload": "x" * (129 * 1024), "responseTimeoutInSeconds": 5}))
        assert response.status_code == 413, response.text
        assert json.loads(response.json()["Message"])["errorCode"] == 413002  # the direct-method envelope
        rid = device.twin_get()
        await device.expect_reply(rid)
        assert not [p for p in device.packets if isinstance(p, Publish) and "/methods/POST/" in p.topic]
    finally:
        await device.close()


async def test_json_nested_too_deep_to_decode_is_a_bad_request_not_a_crash(emulator):
    """Found by the fuzz run above: 3,000 nested brackets made json.loads raise RecursionError, which
    escaped as a 500 with a logged traceback (reported patch) or killed the connection (method answer)."""
    device_id, key = emulator.add_device()
    device = await RawDevice.connected(emulator, device_id, key)
    try:
        rid = "deep"
        device.publish(f"$iothub/twin/PATCH/properties/reported/?$rid={rid}", b'{"a":' * 3000 + b"1" + b"}" * 3000)
        reply = await device.expect_reply(rid)
        assert reply_status(reply) == 400
        call = asyncio.get_running_loop().run_in_executor(
            None, lambda: emulator.threaded.invoke_method(device_id, "deep", None, response_timeout=10))
        request = await device.expect(lambda p: isinstance(p, Publish) and "/methods/POST/" in p.topic)
        method_rid = request.topic.split("$rid=")[1]
        device.publish(f"$iothub/methods/res/200/?$rid={method_rid}", b"[" * 3000 + b"]" * 3000)
        result = await call
        assert result.status == 200 and result.payload == "[" * 3000 + "]" * 3000  # kept as text
        rid = device.twin_get()
        assert reply_status(await device.expect_reply(rid)) == 200  # still connected
    finally:
        await device.close()


async def _websocket(emulator, session):
    context = ssl.create_default_context(cadata=emulator.ca_pem)
    return await session.ws_connect(f"wss://{emulator.host_name}:{emulator.rest_port}/$iothub/websocket",
                                    protocols=("mqtt",), ssl=context, timeout=aiohttp.ClientWSTimeout(ws_close=10))


@pytest.mark.parametrize("frames", [
    [b"\x00" * 64], [b"\xff\xff\xff\xff\xff"], [b"\x10\x14" + b"A" * 20],  # garbage, bad length, a CONNECT of nonsense
    [b"\x30\xff\xff\xff\x7f"],  # a PUBLISH announcing 256 MB before any CONNECT
    ["text frames are not MQTT"],
])
async def test_garbage_over_mqtt_websockets_closes_only_that_socket(emulator, watcher, frames):
    async with aiohttp.ClientSession() as session:
        socket_ = await _websocket(emulator, session)
        for frame in frames:
            await (socket_.send_str(frame) if isinstance(frame, str) else socket_.send_bytes(frame))
        message = await asyncio.wait_for(socket_.receive(), SOCKET_WAIT)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING,
                                aiohttp.WSMsgType.BINARY), message
        if message.type == aiohttp.WSMsgType.BINARY:  # at most a refusal, then the close
            assert PacketReader().feed(message.data)[0].return_code != 0
            message = await asyncio.wait_for(socket_.receive(), SOCKET_WAIT)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await socket_.close()
    await asyncio.get_running_loop().run_in_executor(None, assert_still_serving, emulator, *watcher)


async def test_bad_credentials_over_mqtt_websockets_are_refused(emulator):
    device_id, key = emulator.add_device()
    async with aiohttp.ClientSession() as session:
        socket_ = await _websocket(emulator, session)
        token = device_token(emulator.host_name, device_id, key, ttl=-1)  # expired
        await socket_.send_bytes(encode(device_connect(emulator.host_name, device_id, token)))
        message = await asyncio.wait_for(socket_.receive(), SOCKET_WAIT)
        assert PacketReader().feed(message.data) == [Connack(False, 5)]
        await socket_.close()
