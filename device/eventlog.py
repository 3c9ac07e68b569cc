"""One readable line per device event: `12:00:01 myDeviceId method rebootDevice -> 200`.

Every line goes through mask_secrets, so a key that slips into an error message is never printed.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TextIO

from hubsettings import mask_secrets


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class EventLog:
    """Writes events as text lines (or JSON lines) to a stream; safe to call from SDK threads."""

    def __init__(self, stream: TextIO | None = None, *, json_lines: bool = False,
                 now: Callable[[], datetime] = utc_now):
        self._stream = stream
        self._json = json_lines
        self._now = now
        self._lock = threading.Lock()

    def event(self, device_id: str, message: str, **data: Any) -> None:
        """One event of one device; `data` only shows in JSON lines."""
        when = self._now()
        if self._json:
            record = {"time": when.isoformat(timespec="milliseconds"), "device": device_id,
                      "message": message, **data}
            line = json.dumps(record, default=str)
        else:
            line = f"{when.astimezone().strftime('%H:%M:%S')} {device_id} {message}"
        self._write(mask_secrets(line))

    def info(self, message: str) -> None:
        """A line that belongs to no device (start-up, shut-down)."""
        if self._json:
            line = json.dumps({"time": self._now().isoformat(timespec="milliseconds"), "message": message})
        else:
            line = message
        self._write(mask_secrets(line))

    def _write(self, line: str) -> None:
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()
