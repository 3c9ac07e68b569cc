"""MQTT over WebSockets: GET /$iothub/websocket (subprotocol "mqtt") on the REST port.

For devices created with websockets=True (they dial port 443) and networks that block 8883. Binary
frames carry MQTT bytes; each connection gets the same sans-I/O session (mqtt/session.py) and the
same DeviceFront as the TLS listener, so auth, twins, methods and telemetry behave identically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import WSCloseCode, WSMsgType, web

from ..mqtt.device_front import DeviceFront
from ..mqtt.connection_base import ClientConnectionBase
from ..mqtt.session import ServerConnection

log = logging.getLogger("emulator.websocket")

WEBSOCKET_PATH = "/$iothub/websocket"
SUBPROTOCOL = "mqtt"
MAX_FRAME_BYTES = 512 * 1024  # above the largest MQTT packet the session accepts
KEEPALIVE_SWEEP_SECONDS = 1.0

FRONT = web.AppKey("device_front", DeviceFront)
CLIENTS = web.AppKey("websocket_clients", set)


class WebSocketClient(ClientConnectionBase):
    """One MQTT connection carried by a WebSocket; implements front_common.ClientConnection."""

    log = log

    def __init__(self, socket: web.WebSocketResponse, front: DeviceFront, peer: str,
                 monotonic: Callable[[], float] = time.monotonic):
        self.connection = ServerConnection(now=monotonic)
        self.peer = peer
        self._socket = socket
        self.front = front
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._closing = False

    def receive(self, data: bytes) -> None:
        self._process(self.connection.receive_data(data))

    def flush(self) -> None:
        """Queue what the session wants sent (the writer task sends it in order); close after it
        when the session is closed."""
        if self._closing:
            return
        data = self.connection.data_to_send()
        if data:
            self._outbox.put_nowait(data)
        if self.connection.state == "closed":
            self._closing = True
            self._outbox.put_nowait(None)

    async def close(self, code: int = WSCloseCode.GOING_AWAY) -> None:
        self.connection.close()
        self.flush()
        with contextlib.suppress(Exception):
            await self._socket.close(code=code)

    async def write_frames(self) -> None:
        while True:
            data = await self._outbox.get()
            if data is None:
                await self._socket.close()
                return
            await self._socket.send_bytes(data)


async def mqtt_over_websocket(request: web.Request) -> web.WebSocketResponse:
    socket = web.WebSocketResponse(protocols=(SUBPROTOCOL,), max_msg_size=MAX_FRAME_BYTES)
    await socket.prepare(request)
    front = request.app[FRONT]
    peer = request.remote or "?"
    client = WebSocketClient(socket, front, f"{peer} (websocket)")
    clients = request.app[CLIENTS]
    clients.add(client)
    writer = asyncio.create_task(client.write_frames())
    try:
        async for message in socket:
            if message.type == WSMsgType.BINARY:
                client.receive(message.data)
            else:  # text frames are not MQTT: IoT Hub drops such a client
                log.warning("%s: closing: a %s frame is not MQTT", client.peer, message.type.name)
                break
    finally:
        clients.discard(client)
        client.connection.connection_lost()
        front.client_closed(client)
        if not writer.done():
            writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await writer
        if not socket.closed:
            await socket.close()
    return socket


async def sweep_keepalives(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: check every WebSocket MQTT session's keepalive once a second."""
    async def sweep() -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_SWEEP_SECONDS)
            for client in list(app[CLIENTS]):
                client.check_keepalive()

    task = asyncio.create_task(sweep())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def close_websockets(app: web.Application) -> None:
    """on_shutdown: end every MQTT-over-WebSocket connection so the server can stop promptly."""
    for client in list(app[CLIENTS]):
        await client.close()


def add_websocket_route(app: web.Application, front: DeviceFront) -> None:
    app[FRONT] = front
    app[CLIENTS] = set()
    app.router.add_get(WEBSOCKET_PATH, mqtt_over_websocket)
    app.cleanup_ctx.append(sweep_keepalives)
    app.on_shutdown.append(close_websockets)
