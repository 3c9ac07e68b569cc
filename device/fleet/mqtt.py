"""One MQTT 3.1.1 client connection over asyncio, on the emulator's sans-I/O codec (mqttcodec).

Light on purpose: one asyncio.Protocol per connection, no threads, no per-connection tasks, so one
process holds 10,000 device connections. `open_connection()` dials (TLS or plain), sends CONNECT and
waits for CONNACK; inbound QoS 1 publishes are PUBACKed once handed to `on_publish`; PUBACK/SUBACK are
matched to their packet ids. A PINGREQ keeps an idle connection alive, and a missing PINGRESP closes it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from mqttcodec import (
    Connack,
    Connect,
    Disconnect,
    PacketReader,
    Pingreq,
    Pingresp,
    ProtocolError,
    Puback,
    Publish,
    Suback,
    Subscribe,
    encode,
)

OnPublish = Callable[["MqttConnection", Publish], None]
TLS_READ_BUFFER = 4 * 1024
OnLost = Callable[["MqttConnection"], None]


class ConnectionClosed(ConnectionError):
    """The connection closed while a PUBACK, SUBACK or CONNACK was awaited."""


class MqttConnection(asyncio.Protocol):
    def __init__(self, on_publish: OnPublish | None = None, on_lost: OnLost | None = None):
        self.on_publish = on_publish
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self._reader = PacketReader()
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._connack: asyncio.Future[Connack] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._waiting: dict[int, asyncio.Future[object]] = {}  # packet id -> PUBACK/SUBACK awaited
        self._next_id = 0
        self._keepalive: asyncio.TimerHandle | None = None
        self._pong_due = False
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
                if self.on_publish is not None:
                    self.on_publish(self, packet)
                if packet.qos == 1 and packet.packet_id is not None:
                    self._write(Puback(packet.packet_id))
            elif isinstance(packet, (Puback, Suback)):
                waiter = self._waiting.pop(packet.packet_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(packet)
            elif isinstance(packet, Connack):
                if not self._connack.done():
                    self._connack.set_result(packet)
            elif isinstance(packet, Pingresp):
                self._pong_due = False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        if not self._connack.done():
            self._connack.set_exception(ConnectionClosed("connection closed before CONNACK"))
            self._connack.exception()  # retrieved: nobody may be waiting any more
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(ConnectionClosed("connection closed"))
        self._waiting.clear()
        if not self.closed.done():
            self.closed.set_result(None)
            if self.on_lost is not None:
                self.on_lost(self)

    # ---- operations ------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def _write(self, packet: object) -> None:
        if self.is_open:
            self.transport.write(encode(packet))  # type: ignore[union-attr,arg-type]

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    async def handshake(self, connect: Connect) -> int:
        """Send CONNECT and return CONNACK's return code (0 accepted); keeps the connection alive."""
        self.client_id = connect.client_id
        self._write(connect)
        connack = await self._connack
        if connack.return_code == 0 and connect.keepalive:
            self._schedule_ping(connect.keepalive)
        return connack.return_code

    def _schedule_ping(self, keepalive: int) -> None:
        # Ping at 3/4 of the keepalive; a PINGRESP still missing at the next tick means a dead peer.
        def tick() -> None:
            if not self.is_open:
                return
            if self._pong_due:
                self.close()
                return
            self._pong_due = True
            self._write(Pingreq())
            self._keepalive = self._loop.call_later(keepalive * 0.75, tick)
        self._keepalive = self._loop.call_later(keepalive * 0.75, tick)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> asyncio.Future[object] | None:
        """Send a publish; for QoS 1 returns a future resolved by the PUBACK (awaiting it is optional)."""
        if qos == 0:
            self._write(Publish(topic, payload))
            return None
        packet_id = self._packet_id()
        waiter: asyncio.Future[object] = self._loop.create_future()
        if not self.is_open:
            waiter.set_exception(ConnectionClosed("connection closed"))
        else:
            self._waiting[packet_id] = waiter
            self._write(Publish(topic, payload, qos=1, packet_id=packet_id))
        # Fire-and-forget callers never await it; keep its exception from being reported as unretrieved.
        waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
        return waiter

    async def subscribe(self, filters: str | tuple[str, ...], qos: int = 1) -> tuple[int, ...]:
        """SUBSCRIBE to a filter, or to every filter of a tuple in one packet; returns SUBACK's codes."""
        if isinstance(filters, str):
            filters = (filters,)
        packet_id = self._packet_id()
        waiter: asyncio.Future[object] = self._loop.create_future()
        self._waiting[packet_id] = waiter
        self._write(Subscribe(packet_id, tuple((f, qos) for f in filters)))
        suback = await waiter
        return tuple(suback.return_codes)  # type: ignore[attr-defined]

    def disconnect(self) -> None:
        """A polite DISCONNECT, then close."""
        self._write(Disconnect())
        self.close()

    def close(self) -> None:
        if self.is_open:
            self.transport.close()  # type: ignore[union-attr]


async def open_connection(host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                          server_hostname: str | None = None, on_publish: OnPublish | None = None,
                          on_lost: OnLost | None = None, timeout: float = 30.0) -> MqttConnection:
    """Dial host:port (TLS when ssl_context is given) and return the connection, before CONNECT."""
    loop = asyncio.get_running_loop()
    _, connection = await asyncio.wait_for(
        loop.create_connection(lambda: MqttConnection(on_publish, on_lost), host, port, ssl=ssl_context,
                               server_hostname=(server_hostname or host) if ssl_context else None),
        timeout)
    return connection


async def open_client(host: str, port: int, connect: Connect, *, ssl_context: ssl.SSLContext | None = None,
                      server_hostname: str | None = None, on_publish: OnPublish | None = None,
                      on_lost: OnLost | None = None, timeout: float = 30.0) -> MqttConnection:
    """Dial, CONNECT, wait for CONNACK 0; raises MqttRefused, OSError or TimeoutError."""

    async def _open() -> MqttConnection:
        connection = await open_connection(host, port, ssl_context=ssl_context, server_hostname=server_hostname,
                                           on_publish=on_publish, on_lost=on_lost, timeout=timeout)
        try:
            code = await connection.handshake(connect)
        except BaseException:
            connection.close()
            raise
        if code != 0:
            connection.close()
            raise MqttRefused(code)
        return connection

    return await asyncio.wait_for(_open(), timeout)


class MqttRefused(Exception):
    """CONNACK with a non-zero return code."""

    def __init__(self, return_code: int):
        super().__init__(f"CONNACK return code {return_code}")
        self.return_code = return_code


def client_ssl_context(ca_pem: str | None = None, ca_file: str | None = None) -> ssl.SSLContext:
    """The system trust store plus the given CA, with host name checks on (as the SDKs do). One context
    serves the whole fleet."""
    context = ssl.create_default_context(cafile=ca_file)
    if ca_pem:
        context.load_verify_locations(cadata=ca_pem)
    return context


def shrink_tls_read_buffers() -> None:
    """asyncio gives every TLS connection a zero-filled 256 KiB read buffer (SSLProtocol.max_size):
    10,000 device connections would hold 2.5 GB for nothing. A device receives little; a bigger
    message (up to IoT Hub's 256 KB) is read in several 4 KiB steps. Process-wide, so only the fleet
    engine's process (and the bench's raw fleet) call it."""
    import asyncio.sslproto

    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
