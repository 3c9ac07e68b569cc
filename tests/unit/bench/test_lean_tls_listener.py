"""The fix the capacity bench led to: the emulator's MQTT/TLS listener reads with a small TLS
buffer, not asyncio's 256 KiB per connection (which made 10,000 devices cost 2.7 GiB)."""

import asyncio
import ssl

from emulator.certs import ensure_certificates, server_ssl_context
from emulator.hub import Hub
from mqttcodec import Connack, Connect, PacketReader, encode
from emulator.mqtt.device_front import DeviceFront
from emulator.mqtt.server import TLS_READ_BUFFER_BYTES, MqttServer

WAIT_SECONDS = 30


async def test_device_connections_get_a_small_tls_read_buffer_and_still_speak_mqtt(tmp_path):
    certs = ensure_certificates(tmp_path / "certs", ["127.0.0.1"])
    server = MqttServer(DeviceFront(Hub()), server_ssl_context(certs))
    port = await server.start("127.0.0.1", 0)
    try:
        context = ssl.create_default_context(cafile=str(certs.ca_cert))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1")
        async with asyncio.timeout(WAIT_SECONDS):
            while not server.connections:  # the server side finishes its handshake a moment later
                await asyncio.sleep(0.01)
        [client] = server.connections
        tls_layer = client.transport._ssl_protocol  # asyncio internals: what the fix relies on
        assert len(tls_layer._ssl_buffer) <= TLS_READ_BUFFER_BYTES < 64 * 1024

        writer.write(encode(Connect("nobody", username="localhost/nobody/?api-version=2019-10-01",
                                    password=b"not a token")))
        await writer.drain()
        packets = PacketReader().feed(await asyncio.wait_for(reader.read(4), WAIT_SECONDS))
        assert isinstance(packets[0], Connack) and packets[0].return_code != 0  # refused, answered over TLS
        writer.close()
    finally:
        await server.stop()
