"""What every MQTT transport's connection shares (the TLS listener in mqtt/server.py, MQTT over
WebSockets in rest/websocket.py): session events -> the device front, and the keepalive sweep."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .device_front import DeviceFront
    from .session import ServerConnection


class ClientConnectionBase:
    """Base of a front_common.ClientConnection: subclasses provide `connection`, `peer`, `front` and `flush()`."""

    connection: ServerConnection
    peer: str
    front: DeviceFront
    log: ClassVar[logging.Logger] = logging.getLogger("emulator.mqtt")

    def _process(self, events: list[Any]) -> None:
        front = self.front
        while True:
            front.handle_events(self, events)  # type: ignore[arg-type]  # subclasses implement ClientConnection
            if not self.connection.accepted_with_pending_input:
                break
            events = self.connection.receive_data(b"")  # packets the client sent right behind CONNECT

    def check_keepalive(self, now: float | None = None) -> None:
        """Close the connection (and tell the front, which logs why) once its keepalive or connect
        deadline passed."""
        events = self.connection.check_keepalive(now)
        if events:
            self._process(events)
