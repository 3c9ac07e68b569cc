"""The thin asyncio TLS listener of the AMQP front (port 5671): socket bytes <-> one AmqpConnection.

Everything runs on the emulator's event loop, so the hub is only ever called from its one thread.
A connection that sends garbage is closed (with proton's error frame when it got that far) and
logged; the others carry on.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl

from ..hub import Hub
from ..mqtt.server import AddressInUse
from .connection import AmqpConnection
from .pump import ConnectionPump
from .service_links import ServiceEndpoints

log = logging.getLogger("emulator.amqp")

DEFAULT_PORT = 5671


class _AmqpProtocol(asyncio.Protocol):
    def __init__(self, server: AmqpServer):
        self._server = server
        self.transport: asyncio.Transport | None = None
        self.pump: ConnectionPump | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        name = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.pump = ConnectionPump(AmqpConnection(self._server.endpoints, name), self._write, self._close)
        self._server.connections.add(self)
        log.debug("%s: AMQP connection opened", name)

    def data_received(self, data: bytes) -> None:
        assert self.pump is not None
        self.pump.feed(data)

    def pause_writing(self) -> None:
        if self.pump is not None:
            self.pump.connection.paused = True

    def resume_writing(self) -> None:
        if self.pump is not None:
            self.pump.connection.resume()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pump is not None:
            log.debug("%s: AMQP connection closed (%s)", self.pump.connection.peer, exc or "")
            self.pump.lost()
        self._server.connections.discard(self)


class AmqpServer:
    """IoT Hub's service-side AMQP endpoint over TLS."""

    def __init__(self, hub: Hub, ssl_context: ssl.SSLContext):
        self.hub = hub
        self.ssl_context = ssl_context
        self.endpoints = ServiceEndpoints(hub)
        self.connections: set[_AmqpProtocol] = set()
        self._server: asyncio.Server | None = None

    async def start(self, address: str, port: int = DEFAULT_PORT) -> int:
        """Listen on address:port; returns the port bound. Raises AddressInUse."""
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(lambda: _AmqpProtocol(self), host=address, port=port,
                                                    ssl=self.ssl_context)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise AddressInUse(errno.EADDRINUSE, f"{address}:{port} (AMQP) is already in use (another "
                                   "emulator or program listens there); stop it, or choose another "
                                   "--address or --amqp-port") from None
            raise
        bound = self._server.sockets[0].getsockname()[1]
        self.endpoints.event_hubs.port = bound  # where the redirect sends Event Hubs clients
        return bound

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            for client in list(self.connections):
                client.abort()
            await self._server.wait_closed()
            self._server = None
