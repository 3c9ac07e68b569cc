"""The HTTPS listener for the REST front, on the caller's event loop (the same loop as MQTT).

`await RestServer(app).start(address, port, ssl_context)` returns the port bound (0 picks one);
a taken port is reported as mqtt.server.AddressInUse so the CLI maps both listeners the same way.

The listener runs each TLS handshake itself rather than leaving it to asyncio's server, which drops a
failed one without a word: a client that does not trust the emulator's CA then only sees its own
"certificate verify failed", and the emulator's log says why and what fixes it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..mqtt.server import AddressInUse

log = logging.getLogger("emulator.rest")

SHUTDOWN_TIMEOUT = 5.0  # seconds in-flight requests get when the emulator stops
HANDSHAKE_TIMEOUT = 10.0  # seconds a client gets to complete the TLS handshake


def trust_hint(ca_file: str) -> str:
    """What makes each kind of client trust the emulator's CA."""
    return (f"the client did not trust the emulator's CA: set REQUESTS_CA_BUNDLE={ca_file} (service SDK, az), "
            f"SSL_CERT_FILE={ca_file} (Python device SDK), NODE_EXTRA_CA_CERTS={ca_file} (Node.js), "
            f"--cacert {ca_file} (curl)")


def handshake_failure(error: BaseException, ca_file: str) -> tuple[int, str]:
    """(log level, message) for a TLS handshake that did not complete."""
    reason = getattr(error, "reason", None) or type(error).__name__
    if isinstance(error, ssl.SSLError) and reason == "HTTP_REQUEST":
        return logging.INFO, "it spoke plain HTTP to the HTTPS port: use https://"
    if isinstance(error, ssl.SSLError):
        return logging.INFO, f"{reason}: {trust_hint(ca_file)}"
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return logging.INFO, f"it did not complete the TLS handshake within {HANDSHAKE_TIMEOUT:g} s (is it speaking TLS?)"
    # Closed before or during the handshake without a TLS alert: port checks do this.
    return logging.DEBUG, f"it closed the connection before the TLS handshake completed ({reason})"


class _Watched(asyncio.Protocol):
    """The HTTP handler behind TLS, noting a client that hangs up before sending a single byte: Node.js
    completes the handshake and checks the certificate afterwards, so that is how its distrust looks."""

    def __init__(self, handler: asyncio.Protocol, on_silent_close: Callable[[], None]):
        self.handler = handler
        self._on_silent_close = on_silent_close
        self._received = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._received = True
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._received:
            self._on_silent_close()
        self.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()


class _TlsAcceptor(asyncio.Protocol):
    """The protocol of a freshly accepted TCP connection: runs the TLS handshake, logs a failed one with
    its likely fix, and hands the TLS transport to a new HTTP handler."""

    def __init__(self, site: _TlsSite):
        self._site = site

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # start_tls resumes it once the TLS layer is in place
        self._site.handshake(transport)


class _TlsSite(web.TCPSite):
    """aiohttp's TCPSite with the TLS handshake run by _TlsAcceptor."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, ssl_context: ssl.SSLContext):
        super().__init__(runner, host, port)
        self._tls = ssl_context
        self._ca_file = getattr(ssl_context, "ca_file", "") or "<the emulator's CA file>"
        self._handshakes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._runner._reg_site(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _TlsAcceptor(self), self._host, self._port,
                                                backlog=self._backlog, reuse_address=self._reuse_address)
        self._bound_port = self._server.sockets[0].getsockname()[1]

    def handshake(self, transport: asyncio.Transport) -> None:
        task = asyncio.get_running_loop().create_task(self._handshake(transport))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, transport: asyncio.Transport) -> None:
        peer = _peer(transport.get_extra_info("peername"))
        server = self._runner.server
        assert server is not None
        handler = server()

        def silent_close() -> None:
            log.info("%s: closed the TLS connection without sending a request: if it is a Node.js client, "
                     "%s", peer, trust_hint(self._ca_file))

        watched = _Watched(handler, silent_close)
        try:
            secure = await asyncio.get_running_loop().start_tls(
                transport, watched, self._tls, server_side=True, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except asyncio.CancelledError:
            transport.abort()
            raise
        except (OSError, TimeoutError, asyncio.TimeoutError) as e:
            level, why = handshake_failure(e, self._ca_file)
            log.log(level, "%s: TLS handshake failed: %s", peer, why)
            transport.abort()
            return
        if secure is None:  # the connection went away meanwhile
            return
        watched.connection_made(secure)

    async def stop(self) -> None:
        for task in list(self._handshakes):
            task.cancel()
        await super().stop()


def _peer(peername: Any) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return "a client"


class RestServer:
    def __init__(self, app: web.Application):
        self.app = app
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, address: str, port: int, ssl_context: ssl.SSLContext | None) -> int:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                               shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        site = (_TlsSite(runner, address, port, ssl_context) if ssl_context is not None
                else web.TCPSite(runner, address, port))
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            if e.errno == errno.EADDRINUSE:
                raise AddressInUse(errno.EADDRINUSE, f"{address}:{port} is already in use (another emulator "
                                   "or program listens there); stop it or choose another --rest-port") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise AddressInUse(errno.EADDRNOTAVAIL, f"cannot listen on {address}: no such local address") from None
            if e.errno == errno.EACCES:
                raise AddressInUse(errno.EACCES, f"no permission to listen on {address}:{port} (ports below "
                                   "1024 need privileges); choose another --rest-port") from None
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def start_rest_server(app: web.Application, address: str, port: int,
                            ssl_context: ssl.SSLContext | None) -> RestServer:
    """Start `app` on address:port; the returned server knows the port and stops with `await stop()`."""
    server = RestServer(app)
    await server.start(address, port, ssl_context)
    return server
