"""A raw asyncio MQTT 3.1.1 client on the emulator's own codec: light enough to hold thousands of
device connections in one process, with none of the SDK's threads and retries.

`open_client()` connects (TLS or plain), sends CONNECT and waits for CONNACK. Inbound QoS 1 publishes
are PUBACKed here; everything inbound goes to `on_publish(client, packet)`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from emulator.mqtt.codec import (
    Connack,
    Connect,
    PacketReader,
    Pingresp,
    ProtocolError,
    Puback,
    Publish,
    Suback,
    Subscribe,
    encode,
)

OnPublish = Callable[["MqttClient", Publish], None]


class MqttRefused(Exception):
    """CONNACK with a non-zero return code, or the connection closed before CONNACK."""


class MqttClient(asyncio.Protocol):
    def __init__(self, on_publish: OnPublish | None = None):
        self.on_publish = on_publish
        self.transport: asyncio.Transport | None = None
        self._reader = PacketReader()
        loop = asyncio.get_running_loop()
        self._connack: asyncio.Future[Connack] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._waiting: dict[int, asyncio.Future[object]] = {}  # packet id -> PUBACK/SUBACK awaited
        self._next_id = 0
        self.client_id = ""

    # ---- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            packets = self._reader.feed(data)
        except ProtocolError:
            self.close()
            return
        for packet in packets:
            if isinstance(packet, Publish):
                if packet.qos == 1 and packet.packet_id is not None:
                    self._write(Puback(packet.packet_id))
                if self.on_publish is not None:
                    self.on_publish(self, packet)
            elif isinstance(packet, (Puback, Suback)):
                waiter = self._waiting.pop(packet.packet_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(packet)
            elif isinstance(packet, Connack):
                if not self._connack.done():
                    self._connack.set_result(packet)
            elif isinstance(packet, Pingresp):
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._connack.done():
            self._connack.set_exception(MqttRefused("connection closed before CONNACK"))
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("connection closed"))
        self._waiting.clear()
        if not self.closed.done():
            self.closed.set_result(None)

    # ---- operations ------------------------------------------------------------------------------
    def _write(self, packet: object) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode(packet))  # type: ignore[arg-type]

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    async def handshake(self, connect: Connect) -> None:
        self.client_id = connect.client_id
        self._write(connect)
        connack = await self._connack
        if connack.return_code != 0:
            self.close()
            raise MqttRefused(f"CONNACK return code {connack.return_code}")

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> asyncio.Future[object] | None:
        """Send a publish; for QoS 1 returns a future resolved by the PUBACK (awaiting it is optional)."""
        if qos == 0:
            self._write(Publish(topic, payload))
            return None
        packet_id = self._packet_id()
        waiter: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        # Fire-and-forget callers never await it; keep the exception from being reported as unretrieved.
        waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._waiting[packet_id] = waiter
        self._write(Publish(topic, payload, qos=1, packet_id=packet_id))
        return waiter

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        packet_id = self._packet_id()
        waiter: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._waiting[packet_id] = waiter
        self._write(Subscribe(packet_id, ((topic_filter, qos),)))
        await waiter

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


async def open_client(host: str, port: int, connect: Connect, *, ssl_context: ssl.SSLContext | None = None,
                      on_publish: OnPublish | None = None, timeout: float = 30.0) -> MqttClient:
    """Connect, CONNECT, wait for CONNACK 0; raises MqttRefused, OSError or asyncio.TimeoutError."""
    loop = asyncio.get_running_loop()

    async def _open() -> MqttClient:
        _, client = await loop.create_connection(lambda: MqttClient(on_publish), host, port, ssl=ssl_context,
                                                 server_hostname=host if ssl_context else None)
        try:
            await client.handshake(connect)
        except BaseException:
            client.close()
            raise
        return client

    return await asyncio.wait_for(_open(), timeout)


def client_ssl_context(ca_file: str) -> ssl.SSLContext:
    """Trust only the given CA, with host name checks on (as the SDKs do)."""
    return ssl.create_default_context(cafile=ca_file)


def rid_of(topic: str) -> str | None:
    """The `$rid` value of an IoT Hub topic (`...?$rid=X&...`), or None."""
    _, _, query = topic.partition("?")
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key == "$rid":
            return value
    return None
