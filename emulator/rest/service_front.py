"""The service side of the emulator as one unit: the HTTPS REST front (+ MQTT over WebSockets) and the
hub's job scheduler, started and stopped together on the emulator's event loop.

EmulatorServer only has to do:

    self.service = ServiceFront(hub, device_front, ssl_context)
    self.rest_port = await self.service.start(address, rest_port)
    ...
    await self.service.stop()          # before hub.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from ..hub import Hub
from ..mqtt.device_front import DeviceFront
from .app import create_app
from .listener import RestServer
from .throttle import Throttle


class ServiceFront:
    def __init__(self, hub: Hub, device_front: DeviceFront | None, ssl_context: ssl.SSLContext | None, *,
                 limits: Throttle | None = None):
        self.hub = hub
        self.limits = limits
        self.scheduler = hub.jobs  # built and restored by the hub; this front runs it while it listens
        self._app = create_app(hub, self.scheduler, device_front=device_front, limits=limits)
        self._ssl_context = ssl_context
        self._rest: RestServer | None = None
        self._scheduling: asyncio.Task[None] | None = None
        self.port: int | None = None

    async def start(self, address: str, port: int) -> int:
        """Listen on address:port (0 picks a port) and start running jobs; returns the port bound.
        Raises mqtt.server.AddressInUse when the port is taken or not permitted."""
        self._rest = RestServer(self._app)
        self.port = await self._rest.start(address, port, self._ssl_context)
        self._scheduling = asyncio.create_task(self.scheduler.run(), name="iothub-job-scheduler")
        return self.port

    async def stop(self) -> None:
        if self._rest is not None:
            await self._rest.stop()
            self._rest = None
        if self._scheduling is not None:
            await self.scheduler.aclose()  # running jobs stay `running` in the store: restore() ends them
            self._scheduling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduling
            self._scheduling = None
