"""The thin asyncio TLS listener: socket bytes <-> one ServerConnection per client, events -> DeviceFront.

Nothing here knows about IoT Hub; it moves bytes, sweeps keepalive deadlines, logs every TLS
handshake that fails or is abandoned (at INFO, with the likely fix: such a client never reaches the
MQTT layer) and reports a port that is already taken as one clear error instead of a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
import time
from asyncio import sslproto
from collections.abc import Callable

from ..tls_layer import SharedBufferTls
from .device_front import DeviceFront
from .handshake import explain_handshake_failure
from .connection_base import ClientConnectionBase
from .session import ServerConnection

log = logging.getLogger("emulator.mqtt")

KEEPALIVE_SWEEP_SECONDS = 1.0


class _LeanTlsProtocol(SharedBufferTls):
    """asyncio's own TLS layer, reading into a shared buffer (tls_layer.py), that logs why a handshake
    did not complete (asyncio itself says nothing outside debug mode).

    The hooks are asyncio's (3.11+) internal ones: _on_handshake_complete sees OpenSSL errors and a
    client's EOF, _check_handshake_timeout the timeout, connection_lost a reset mid-handshake."""

    def __init__(self, *args: object, ca_file: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._ca_file = ca_file
        self._peer = "?"
        self._failure_logged = False
        self._bytes_seen = False  # a connection closed before sending anything is a port probe, not a client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        super().connection_made(transport)

    def buffer_updated(self, nbytes: int) -> None:
        self._bytes_seen = self._bytes_seen or nbytes > 0
        super().buffer_updated(nbytes)

    def _log_failure(self, exc: BaseException | type[BaseException] | None) -> None:
        if self._failure_logged:
            return
        self._failure_logged = True
        if self._bytes_seen:
            log.info("%s: %s", self._peer, explain_handshake_failure(exc, self._ca_file))
        else:
            log.debug("%s: closed before sending any TLS bytes (a port probe?)", self._peer)

    def _on_handshake_complete(self, handshake_exc: BaseException | type[BaseException] | None) -> None:
        if handshake_exc is not None:
            self._log_failure(handshake_exc)
        super()._on_handshake_complete(handshake_exc)

    def _check_handshake_timeout(self) -> None:
        if self._state == sslproto.SSLProtocolState.DO_HANDSHAKE:
            self._log_failure(TimeoutError)
        super()._check_handshake_timeout()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._state == sslproto.SSLProtocolState.DO_HANDSHAKE:
            self._log_failure(exc)
        super().connection_lost(exc)


class AddressInUse(OSError):
    """The address and port the emulator should listen on are taken by something else."""


class _ClientProtocol(ClientConnectionBase, asyncio.Protocol):
    """One TLS connection; implements front_common.ClientConnection."""

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
        self._server.front.client_closed(self)


class MqttServer:
    def __init__(self, front: DeviceFront, ssl_context: ssl.SSLContext, *,
                 monotonic: Callable[[], float] = time.monotonic,
                 keepalive_sweep_seconds: float = KEEPALIVE_SWEEP_SECONDS,
                 ca_file: str = "the emulator's CA file (certs/ca.pem in its data directory)"):
        """``ca_file``: the CA clients must trust, named in the log line of a failed handshake."""
        self.front = front
        self.ca_file = ca_file
        self.keepalive_sweep_seconds = keepalive_sweep_seconds
        self.ssl_context = ssl_context
        self.monotonic = monotonic
        self.connections: set[_ClientProtocol] = set()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, address: str, port: int) -> int:
        """Listen on address:port; returns the port bound (useful with port 0)."""
        loop = asyncio.get_running_loop()

        # TLS is layered here rather than with create_server(ssl=...), which would give every connection
        # asyncio's own 256 KiB read buffer; handshake and shutdown timeouts keep asyncio's defaults.
        def tls_client() -> asyncio.BaseProtocol:
            return _LeanTlsProtocol(loop, _ClientProtocol(self), self.ssl_context, None, server_side=True,
                                    ca_file=self.ca_file)

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
            now = self.monotonic()  # once per sweep: the clock is the same clock each connection reads
            for client in list(self.connections):
                client.check_keepalive(now)

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
