"""The asyncio TLS listener on a real loopback socket, driven by a raw client built on our codec:
TLS with the dev CA, pipelined packets, keepalive expiry (fake clock), takeover, address in use."""

import asyncio
import errno
import logging
import socket
import ssl

import pytest

from emulator.certs import ensure_certificates, server_ssl_context
from emulator.hub import Hub
from mqttcodec import Connack, Connect, PacketReader, Publish, Suback, Subscribe, encode
from emulator.mqtt.device_front import DeviceFront
from emulator.mqtt.server import AddressInUse, MqttServer
from hubsettings import build_token, wellknown

WAIT = 20  # generous bound for a loaded machine; never reached when things work


class FakeMonotonic:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def certs(tmp_path):
    return ensure_certificates(tmp_path / "certs")


@pytest.fixture
async def running(certs):
    hub = Hub("localhost")
    hub.register_well_known()
    clock = FakeMonotonic()
    server = MqttServer(DeviceFront(hub), server_ssl_context(certs), monotonic=clock, keepalive_sweep_seconds=0.01,
                        ca_file=str(certs.ca_cert))
    port = await server.start("127.0.0.1", 0)
    yield hub, server, port, clock
    await server.stop()


class RawClient:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.packets = PacketReader()
        self.pending = []

    @classmethod
    async def open(cls, certs, port):
        context = ssl.create_default_context(cadata=certs.ca_pem())
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
        return cls(reader, writer)

    async def send(self, *packets):
        self.writer.write(b"".join(encode(p) for p in packets))
        await self.writer.drain()

    async def next(self):
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), WAIT)
            if not data:
                return None  # the server closed the connection
            self.pending += self.packets.feed(data)
        return self.pending.pop(0)

    async def closed_by_server(self):
        while (packet := await self.next()) is not None:
            pass
        return True

    def close(self):
        self.writer.close()


def device_connect(keepalive=60):
    token = build_token(f"localhost/devices/{wellknown.DEVICE_ID}", wellknown.DEVICE_KEY)
    return Connect(wellknown.DEVICE_ID, f"localhost/{wellknown.DEVICE_ID}/?api-version=2019-10-01",
                   token.encode(), keepalive=keepalive, clean_session=False)


async def test_connect_and_a_twin_get_sent_right_behind_it(running, certs):
    hub, _, port, _ = running
    client = await RawClient.open(certs, port)
    # The SDK may pipeline its twin GET before the CONNACK arrives.
    await client.send(device_connect(), Publish("$iothub/twin/GET/?$rid=1", b" ", 1, 1))
    assert await client.next() == Connack(False, 0)
    packets = [await client.next(), await client.next()]
    reply = next(p for p in packets if isinstance(p, Publish))
    assert reply.topic == "$iothub/twin/res/200/?$rid=1"
    assert hub.is_online(wellknown.DEVICE_ID)
    client.close()


async def test_keepalive_expiry_drops_the_connection(running, certs):
    hub, _, port, clock = running
    client = await RawClient.open(certs, port)
    await client.send(device_connect(keepalive=10))
    assert await client.next() == Connack(False, 0)
    clock.now += 14.9  # 1.5 x keepalive not yet reached
    await asyncio.sleep(0.05)
    assert hub.is_online(wellknown.DEVICE_ID)
    clock.now += 0.2
    assert await client.closed_by_server()
    for _ in range(100):
        if not hub.is_online(wellknown.DEVICE_ID):
            break
        await asyncio.sleep(0.01)
    assert not hub.is_online(wellknown.DEVICE_ID)


async def test_second_connection_for_the_same_device_takes_over(running, certs):
    hub, _, port, _ = running
    first = await RawClient.open(certs, port)
    await first.send(device_connect())
    assert await first.next() == Connack(False, 0)
    await first.send(Subscribe(1, (("$iothub/twin/PATCH/properties/desired/#", 1),)))
    assert await first.next() == Suback(1, (1,))
    second = await RawClient.open(certs, port)
    await second.send(device_connect())
    assert await second.next() == Connack(True, 0)
    assert await first.closed_by_server()
    hub.patch_desired(wellknown.DEVICE_ID, {"a": 1})
    push = await second.next()
    assert push.topic.startswith("$iothub/twin/PATCH/properties/desired/")
    assert hub.is_online(wellknown.DEVICE_ID)
    second.close()


async def test_address_in_use_is_one_clear_error(certs):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = MqttServer(DeviceFront(Hub()), server_ssl_context(certs))
        with pytest.raises(AddressInUse) as info:
            await server.start("127.0.0.1", port)
    assert info.value.errno == errno.EADDRINUSE
    assert f"127.0.0.1:{port} is already in use" in str(info.value)


def test_threaded_emulator_reports_a_start_failure_in_the_caller(tmp_path):
    from emulator.server import EmulatorConfig, ThreadedEmulator
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = EmulatorConfig(address="127.0.0.1", mqtt_port=taken.getsockname()[1], rest_port=None, amqp_port=None,
                                in_memory=True, write_discovery=False)
        with pytest.raises(AddressInUse):
            ThreadedEmulator(config).start()


def test_threaded_emulator_in_process_api(tmp_path):
    from emulator.hub import DeviceNotOnline
    from emulator.server import EmulatorConfig, ThreadedEmulator
    config = EmulatorConfig(address="127.0.0.1", mqtt_port=0, rest_port=0, amqp_port=0, in_memory=True,
                            write_discovery=False)
    with ThreadedEmulator(config) as emulator:
        twin = emulator.patch_desired(wellknown.DEVICE_ID, {"interval": 5})
        assert twin["properties"]["desired"]["interval"] == 5
        assert emulator.get_twin(wellknown.DEVICE_ID)["properties"]["desired"]["$version"] == 2
        with pytest.raises(DeviceNotOnline):
            emulator.invoke_method(wellknown.DEVICE_ID, "reboot")
        data_dir = emulator.server.data_dir
    assert not data_dir.exists()  # in-memory mode leaves no temporary directory behind


# --- TLS handshakes that fail: logged at INFO with the likely fix ---------------------------------------

async def _handshake_log(caplog, *, until):
    for _ in range(int(WAIT / 0.01)):
        lines = [r for r in caplog.records if r.name == "emulator.mqtt" and until(r.getMessage())]
        if lines:
            return lines
        await asyncio.sleep(0.01)
    return []


async def test_a_client_that_does_not_trust_the_ca_is_logged_with_the_fix(running, certs, caplog):
    caplog.set_level(logging.INFO, logger="emulator.mqtt")
    _, _, port, _ = running
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.open_connection("127.0.0.1", port, ssl=ssl.create_default_context(), server_hostname="localhost")
    [line] = await _handshake_log(caplog, until=lambda m: "TLS handshake" in m)
    assert line.levelno == logging.INFO
    assert "did not trust the emulator's CA" in line.getMessage()
    assert f"SSL_CERT_FILE={certs.ca_cert}" in line.getMessage() and "NODE_EXTRA_CA_CERTS" in line.getMessage()


async def test_plain_mqtt_on_the_tls_port_is_logged_with_the_fix(running, caplog):
    caplog.set_level(logging.INFO, logger="emulator.mqtt")
    _, _, port, _ = running
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode(device_connect()))
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), WAIT) == b""  # the server closes it
    writer.close()
    [line] = await _handshake_log(caplog, until=lambda m: "TLS handshake" in m)
    assert line.levelno == logging.INFO and "did not start TLS" in line.getMessage()


async def test_a_port_probe_is_not_logged_at_info(running, caplog):
    caplog.set_level(logging.DEBUG, logger="emulator.mqtt")
    _, _, port, _ = running
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    [line] = await _handshake_log(caplog, until=lambda m: "before sending any TLS bytes" in m)
    assert line.levelno == logging.DEBUG
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and "TLS" in r.getMessage()]
