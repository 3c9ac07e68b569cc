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
from typing import Any

from aiohttp import web

from ..mqtt.server import AddressInUse
from ..tls_layer import start_tls_server

log = logging.getLogger("emulator.rest")

SHUTDOWN_TIMEOUT = 5.0  # seconds in-flight requests get when the emulator stops
HANDSHAKE_TIMEOUT = 10.0  # seconds a client gets to complete the TLS handshake


def trust_hint(ca_file: str) -> str:
    """What makes each kind of client trust the emulator's CA."""
    return (f"the client did not trust the emulator's CA: set REQUESTS_CA_BUNDLE={ca_file} (service SDK, az), "
            "SSL_CERT_FILE (Python device SDK), NODE_EXTRA_CA_CERTS (Node.js), --cacert (curl)")


def handshake_failure(error: BaseException, ca_file: str) -> str:
    """Why a TLS handshake that began (the client sent its hello) did not complete, and the likely fix."""
    reason = getattr(error, "reason", None) or type(error).__name__
    if isinstance(error, ssl.SSLError) and reason == "HTTP_REQUEST":
        return "it spoke plain HTTP to the HTTPS port: use https://"
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return f"it did not complete the TLS handshake within {HANDSHAKE_TIMEOUT:g} s"
    if isinstance(error, ssl.SSLError):
        words = set(reason.split("_"))
        if words & {"CA", "CERTIFICATE"}:  # OpenSSL clients (Python, curl, az) say so with an alert
            return f"TLS alert {reason}: {trust_hint(ca_file)}"
        return f"TLS error {reason} (the emulator speaks TLS 1.2 and 1.3)"
    # Node.js hangs up mid-handshake when it rejects the certificate.
    return f"it hung up mid-handshake: {trust_hint(ca_file)}"


class _TlsAcceptor(asyncio.Protocol):
    """The protocol of a freshly accepted TCP connection. It waits for the client's first bytes, so that a
    connection closed without a byte (a port check) is not taken for a client problem, then runs the TLS
    handshake with them, logs a failed one with its likely fix, and hands the TLS transport to a new HTTP
    handler."""

    def __init__(self, site: _TlsSite):
        self._site = site
        self._transport: asyncio.Transport | None = None
        self._silence: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._silence = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT, self._silent)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._stop_timer()
        self._transport.pause_reading()  # start_tls resumes it once the TLS layer is in place
        self._site.handshake(self._transport, data)

    def eof_received(self) -> bool | None:
        return None  # closes the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._silence is not None:  # before any byte came
            self._stop_timer()
            assert self._transport is not None
            log.debug("%s: closed the connection without a byte (a port check?)",
                      _peer(self._transport.get_extra_info("peername")))

    def _silent(self) -> None:
        self._silence = None
        assert self._transport is not None
        log.info("%s: sent nothing for %g s after connecting: closing (is it speaking TLS?)",
                 _peer(self._transport.get_extra_info("peername")), HANDSHAKE_TIMEOUT)
        self._transport.abort()

    def _stop_timer(self) -> None:
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None


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

    def handshake(self, transport: asyncio.Transport, hello: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._handshake(transport, hello))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, transport: asyncio.Transport, hello: bytes) -> None:
        peer = _peer(transport.get_extra_info("peername"))
        server = self._runner.server
        assert server is not None
        handler = server()
        try:
            # The bytes already read (the client's hello) go to the TLS layer first; reading resumes then.
            secure = await start_tls_server(transport, handler, self._tls, handshake_timeout=HANDSHAKE_TIMEOUT,
                                            first_bytes=hello)
        except asyncio.CancelledError:
            transport.abort()
            raise
        except (OSError, TimeoutError, asyncio.TimeoutError) as e:
            log.info("%s: TLS handshake failed: %s", peer, handshake_failure(e, self._ca_file))
            transport.abort()
            return
        if secure is None:  # the connection went away meanwhile
            return
        handler.connection_made(secure)

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
