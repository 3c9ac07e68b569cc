"""The fix the capacity bench led to: the emulator's MQTT/TLS connections share one socket read buffer
instead of asyncio's 256 KiB each (which made 10,000 devices cost 2.7 GiB), and still each read only
their own bytes."""

import asyncio
import ssl

from emulator.certs import ensure_certificates, server_ssl_context
from emulator.hub import Hub
from mqttcodec import Connack, Connect, PacketReader, encode
from emulator.mqtt.device_front import DeviceFront
from emulator.mqtt.server import MqttServer
from emulator.tls_layer import TLS_READ_BUFFER_BYTES

WAIT_SECONDS = 30


async def test_device_connections_share_one_read_buffer_and_each_reads_only_its_own_bytes(tmp_path):
    certs = ensure_certificates(tmp_path / "certs", ["127.0.0.1"])
    server = MqttServer(DeviceFront(Hub()), server_ssl_context(certs))
    port = await server.start("127.0.0.1", 0)
    try:
        context = ssl.create_default_context(cafile=str(certs.ca_cert))
        clients = [await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1")
                   for _ in range(2)]
        async with asyncio.timeout(WAIT_SECONDS):
            while len(server.connections) < 2:  # the server side finishes its handshake a moment later
                await asyncio.sleep(0.01)
        first, second = (client.transport._ssl_protocol for client in server.connections)  # asyncio internals
        assert first._ssl_buffer is second._ssl_buffer and len(first._ssl_buffer) == TLS_READ_BUFFER_BYTES

        # Two CONNECTs of different devices, sent interleaved in small pieces: each is answered on its own
        # connection, as whole packets, though both went through the one buffer.
        connects = [encode(Connect(f"device-{n}", username=f"localhost/device-{n}/?api-version=2019-10-01",
                                   password=b"not a token" * 50)) for n in range(2)]
        for offset in range(0, max(map(len, connects)), 7):
            for (_, writer), packet in zip(clients, connects):
                writer.write(packet[offset:offset + 7])
                await writer.drain()
            await asyncio.sleep(0)
        for reader, writer in clients:
            packets = PacketReader().feed(await asyncio.wait_for(reader.read(4), WAIT_SECONDS))
            assert isinstance(packets[0], Connack) and packets[0].return_code != 0  # refused, answered over TLS
            writer.close()
    finally:
        await server.stop()


def test_each_event_loop_thread_reads_into_a_buffer_of_its_own():
    """Two emulators in one process run two loops in two threads; a socket read releases the GIL while
    the kernel fills the buffer, so a buffer shared across threads would mix their bytes."""
    import threading

    from emulator.tls_layer import _thread_buffer

    seen = {}

    def remember(name: str) -> None:
        seen[name] = (_thread_buffer(), _thread_buffer())

    threads = [threading.Thread(target=remember, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen["a"][0] is seen["a"][1] and seen["b"][0] is seen["b"][1]  # one per thread...
    assert seen["a"][0].obj is not seen["b"][0].obj  # ...not one per process
