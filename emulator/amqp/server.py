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
import time

from ..hub import Hub, HubError
from ..mqtt.server import AddressInUse
from .cbs import SERVICE_CONNECT
from .connection import AmqpConnection
from .service_links import ServiceEndpoints

log = logging.getLogger("emulator.amqp")

DEFAULT_PORT = 5671


class _AmqpProtocol(asyncio.Protocol):
    def __init__(self, server: AmqpServer):
        self._server = server
        self.transport: asyncio.Transport | None = None
        self.connection: AmqpConnection | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        name = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.connection = AmqpConnection(self._server.endpoints, name, self._server.check_plain)
        self.connection.wake = self.flush
        self._server.connections.add(self)
        log.debug("%s: AMQP connection opened", name)

    def data_received(self, data: bytes) -> None:
        assert self.connection is not None
        try:
            self.connection.receive_data(data)
        except Exception:  # noqa: BLE001 - one connection's bug must not take the listener down
            log.exception("%s: AMQP connection failed; closing it", self.connection.peer)
            self._abort()
            return
        self.flush()

    def flush(self) -> None:
        connection, transport = self.connection, self.transport
        if connection is None or transport is None or transport.is_closing():
            return
        data = connection.data_to_send()
        if data:
            transport.write(data)
        if connection.closed:
            if connection.close_reason:
                log.warning("%s: closing the AMQP connection: %s", connection.peer, connection.close_reason)
            transport.close()
            return
        self._schedule_tick()

    def _schedule_tick(self) -> None:
        assert self.connection is not None
        deadline = self.connection.tick(time.monotonic())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, deadline - time.monotonic()), self.flush)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        log.debug("%s: AMQP connection closed (%s)", self.connection.peer if self.connection else "?", exc or "")
        if self._timer is not None:
            self._timer.cancel()
        if self.connection is not None:
            self.connection.connection_lost()
        self._server.connections.discard(self)


class AmqpServer:
    """IoT Hub's service-side AMQP endpoint over TLS."""

    def __init__(self, hub: Hub, ssl_context: ssl.SSLContext):
        self.hub = hub
        self.ssl_context = ssl_context
        self.endpoints = ServiceEndpoints(hub)
        self.connections: set[_AmqpProtocol] = set()
        self._server: asyncio.Server | None = None

    def check_plain(self, username: str, password: str) -> str | None:
        """SASL PLAIN: `{policy}@sas.root.{hub}` and a SAS token of that policy with ServiceConnect."""
        try:
            policy = self.hub.authenticate_service(password, SERVICE_CONNECT)
        except HubError as e:
            return e.message
        if username.split("@", 1)[0] != policy:
            return f"the username names policy '{username.split('@', 1)[0][:60]}', the token '{policy}'"
        return None

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
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            for client in list(self.connections):
                client._abort()
            await self._server.wait_closed()
            self._server = None
