"""AMQP over WebSockets: GET /$servicebus/websocket[/] (subprotocol "AMQPWSB10") on the REST port
(uamqp asks for the path with the trailing slash, other clients without).

What the SDKs use with TransportType.AmqpOverWebsocket (azure-iot-hub, uamqp: always port 443) and
networks that block 5671. Binary frames carry the AMQP bytes; each WebSocket gets the same sans-I/O
AmqpConnection and service endpoints as the TLS listener, so SASL, $cbs and the nodes behave the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web

from ..hub import Hub
from .connection import AmqpConnection
from .pump import ConnectionPump
from .service_links import ServiceEndpoints

log = logging.getLogger("emulator.amqp")

AMQP_WEBSOCKET_PATH = "/$servicebus/websocket"
AMQP_WEBSOCKET_PATHS = (AMQP_WEBSOCKET_PATH, AMQP_WEBSOCKET_PATH + "/")
SUBPROTOCOL = "AMQPWSB10"
MAX_FRAME_BYTES = 1024 * 1024

ENDPOINTS = web.AppKey("amqp_endpoints", ServiceEndpoints)
SOCKETS = web.AppKey("amqp_websockets", set)


async def amqp_over_websocket(request: web.Request) -> web.WebSocketResponse:
    socket = web.WebSocketResponse(protocols=(SUBPROTOCOL,), max_msg_size=MAX_FRAME_BYTES)
    await socket.prepare(request)
    outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
    connection = AmqpConnection(request.app[ENDPOINTS], f"{request.remote or '?'} (websocket)")
    pump = ConnectionPump(connection, outbox.put_nowait, lambda: outbox.put_nowait(None))

    async def write_frames() -> None:
        while (data := await outbox.get()) is not None:
            await socket.send_bytes(data)
        await socket.close()

    writer = asyncio.create_task(write_frames())
    request.app[SOCKETS].add(socket)
    try:
        async for message in socket:
            if message.type != WSMsgType.BINARY:
                log.warning("%s: closing: a %s frame is not AMQP", connection.peer, message.type.name)
                break
            pump.feed(message.data)
            if connection.closed:
                break
    finally:
        request.app[SOCKETS].discard(socket)
        pump.lost()
        outbox.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await writer
        if not socket.closed:
            await socket.close()
    return socket


async def close_amqp_websockets(app: web.Application) -> None:
    """on_shutdown: end every AMQP-over-WebSocket connection so the server can stop promptly."""
    for socket in list(app[SOCKETS]):
        with contextlib.suppress(Exception):
            await socket.close()


def add_amqp_websocket_route(app: web.Application, hub: Hub) -> None:
    app[ENDPOINTS] = ServiceEndpoints(hub)
    app[SOCKETS] = set()
    for path in AMQP_WEBSOCKET_PATHS:
        app.router.add_get(path, amqp_over_websocket)
    app.on_shutdown.append(close_amqp_websockets)
