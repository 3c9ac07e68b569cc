"""What every transport of the AMQP front shares (the TLS listener in server.py, AMQP over WebSockets in
websocket.py): input bytes into the connection, its output to the transport, its idle-timeout timer,
and a clean close with the reason logged when the connection ends itself."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .connection import AmqpConnection

log = logging.getLogger("emulator.amqp")


class ConnectionPump:
    def __init__(self, connection: AmqpConnection, write: Callable[[bytes], None], close: Callable[[], None]):
        self.connection = connection
        self._write = write
        self._close = close
        self._timer: asyncio.TimerHandle | None = None
        self._finished = False
        connection.wake = self.flush  # the hub pushed something (feedback): send it now
        connection.wake_soon = self.flush_soon
        self._flush_scheduled = False

    def feed(self, data: bytes) -> None:
        try:
            self.connection.receive_data(data)
        except Exception:  # noqa: BLE001 - one connection's bug must not take the listener down
            log.exception("%s: AMQP connection failed; closing it", self.connection.peer)
            self.connection.connection_lost()
            self._finish()
            return
        self.flush()

    def flush(self) -> None:
        if self._finished:
            return
        connection = self.connection
        data = connection.data_to_send()
        if data:
            self._write(data)
        if connection.closed:
            if connection.close_reason:
                log.warning("%s: closing the AMQP connection: %s", connection.peer, connection.close_reason)
            self._finish()
            return
        self._schedule_tick()

    def flush_soon(self) -> None:
        """Flush once the event loop is done with what it is running: messages a burst of device
        publishes appended go out in one write instead of one each."""
        if self._flush_scheduled or self._finished:
            return
        self._flush_scheduled = True
        asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        if not self._finished:
            self.connection.process()
            self.flush()

    def _schedule_tick(self) -> None:
        deadline = self.connection.tick(time.monotonic())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline:
            delay = max(0.0, deadline - time.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self.flush)

    def _finish(self) -> None:
        self._finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._close()

    def lost(self) -> None:
        """The transport closed underneath."""
        self._finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.connection.connection_lost()
