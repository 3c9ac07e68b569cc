"""The HTTPS listener for the REST front, on the caller's event loop (the same loop as MQTT).

`await RestServer(app).start(address, port, ssl_context)` returns the port bound (0 picks one);
a taken port is reported as mqtt.server.AddressInUse so the CLI maps both listeners the same way.
"""

from __future__ import annotations

import errno
import ssl

from aiohttp import web

from ..mqtt.server import AddressInUse

SHUTDOWN_TIMEOUT = 5.0  # seconds in-flight requests get when the emulator stops


class RestServer:
    def __init__(self, app: web.Application):
        self.app = app
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, address: str, port: int, ssl_context: ssl.SSLContext | None) -> int:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                               shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        site = web.TCPSite(runner, address, port, ssl_context=ssl_context)
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
