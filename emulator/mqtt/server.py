"""The thin asyncio TLS listener: socket bytes <-> one ServerConnection per client, events -> DeviceFront.

Nothing here knows about IoT Hub; it moves bytes, sweeps keepalive deadlines and reports a port that
is already taken as one clear error instead of a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
import time
from asyncio import sslproto
from collections.abc import Callable

from .device_front import DeviceFront
from .link import SessionLink
from .session import ServerConnection

log = logging.getLogger("emulator.mqtt")

KEEPALIVE_SWEEP_SECONDS = 1.0
#: Read buffer per TLS connection. asyncio's default (SSLProtocol.max_size) is 256 KiB, allocated
#: zero-filled for every connection: 10,000 devices held 2.7 GiB, over 90% of it in these buffers (issue 7).
#: Device traffic comes in TLS records of at most 16 KiB, so one record's worth reads just as well.
TLS_READ_BUFFER_BYTES = 17 * 1024


class _LeanTlsProtocol(sslproto.SSLProtocol):
    """asyncio's own TLS layer, with a read buffer sized for MQTT devices instead of bulk transfers."""

    max_size = TLS_READ_BUFFER_BYTES


class AddressInUse(OSError):
    """The address and port the emulator should listen on are taken by something else."""


class _ClientProtocol(SessionLink, asyncio.Protocol):
    """One TLS connection; implements device_front.Link."""

    log = log

    def __init__(self, server: MqttServer):
        self._server = server
        self.connection = ServerConnection(now=server.monotonic)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self._server.connections.add(self)

    @property
    def front(self) -> DeviceFront:  # type: ignore[override]
        return self._server.front

    def data_received(self, data: bytes) -> None:
        self._process(self.connection.receive_data(data))

    def flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        data = self.connection.data_to_send()
        if data:
            self.transport.write(data)
        if self.connection.state == "closed":
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.connection_lost()
        self._server.connections.discard(self)
        self._server.front.link_closed(self)


class MqttServer:
    def __init__(self, front: DeviceFront, ssl_context: ssl.SSLContext, *,
                 monotonic: Callable[[], float] = time.monotonic,
                 keepalive_sweep_seconds: float = KEEPALIVE_SWEEP_SECONDS):
        self.front = front
        self.keepalive_sweep_seconds = keepalive_sweep_seconds
        self.ssl_context = ssl_context
        self.monotonic = monotonic
        self.connections: set[_ClientProtocol] = set()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, address: str, port: int) -> int:
        """Listen on address:port; returns the port bound (useful with port 0)."""
        loop = asyncio.get_running_loop()

        # TLS is layered here rather than with create_server(ssl=...), which would always use asyncio's
        # 256 KiB read buffer; handshake and shutdown timeouts keep asyncio's defaults.
        def tls_client() -> asyncio.BaseProtocol:
            return _LeanTlsProtocol(loop, _ClientProtocol(self), self.ssl_context, None, server_side=True)

        # asyncio's default SO_REUSEADDR on POSIX still refuses a port someone listens on; on Windows it
        # is not set, which is what keeps another program from sharing our port there.
        try:
            self._server = await loop.create_server(tls_client, host=address, port=port)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise AddressInUse(errno.EADDRINUSE, f"{address}:{port} is already in use (another emulator "
                                   "or program listens there); stop it or choose another --address") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise AddressInUse(errno.EADDRNOTAVAIL,
                                   f"cannot listen on {address}: no such local address") from None
            raise
        self._sweeper = asyncio.create_task(self._sweep_keepalives())
        return self._server.sockets[0].getsockname()[1]

    async def _sweep_keepalives(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_sweep_seconds)
            for client in list(self.connections):
                client.check_keepalive()

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
        if self._server:
            self._server.close()
            for client in list(self.connections):
                if client.transport:
                    client.transport.abort()
            await self._server.wait_closed()
            for _ in range(3):  # let the aborted connections report connection_lost to the front
                await asyncio.sleep(0)
            self._server = None
