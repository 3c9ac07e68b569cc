"""Device-to-cloud messages the hub received: a bounded buffer (the oldest are dropped first)."""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .clock import iso_timestamp

DEFAULT_CAPACITY = 1000


@dataclass(frozen=True)
class TelemetryMessage:
    device_id: str
    body: bytes
    properties: dict[str, str] = field(default_factory=dict)  # application properties
    system_properties: dict[str, str] = field(default_factory=dict)  # $.mid, $.ct, $.ce, ...
    enqueued_time: float = 0.0

    def to_json(self) -> dict[str, Any]:
        try:
            body: Any = self.body.decode("utf-8")
        except UnicodeDecodeError:
            body = {"base64": base64.b64encode(self.body).decode("ascii")}
        return {"deviceId": self.device_id, "body": body, "properties": dict(self.properties),
                "systemProperties": dict(self.system_properties),
                "enqueuedTime": iso_timestamp(self.enqueued_time)}


class TelemetryBuffer:
    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        self._messages: deque[TelemetryMessage] = deque(maxlen=capacity)
        self._listeners: list[Callable[[TelemetryMessage], None]] = []
        self.received_total = 0

    def add(self, message: TelemetryMessage) -> None:
        self._messages.append(message)
        self.received_total += 1
        for listener in list(self._listeners):
            listener(message)

    def messages(self, device_id: str | None = None) -> list[TelemetryMessage]:
        return [m for m in self._messages if device_id is None or m.device_id == device_id]

    def add_listener(self, listener: Callable[[TelemetryMessage], None]) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[TelemetryMessage], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
