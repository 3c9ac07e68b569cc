"""What every hub handle hands out (emulator in a thread, emulator process, real hub)."""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass, field


class EmulatorStartError(RuntimeError):
    """The emulator could not start (address taken, data directory unusable...): one readable line."""


@dataclass(frozen=True)
class DeviceIdentity:
    """A registered device and what its client needs. repr() masks the key."""

    device_id: str
    primary_key: str = field(repr=False)
    connection_string: str = field(repr=False)


def new_device_id(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def new_key() -> str:
    """A fresh symmetric key as IoT Hub generates them (base64 of 32 random bytes)."""
    return base64.b64encode(os.urandom(32)).decode("ascii")
