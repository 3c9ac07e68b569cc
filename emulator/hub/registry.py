"""The device identity registry: ids, status, symmetric keys, connection state, etags.

Plain state with no I/O; the Hub facade persists what changes. Device ids follow IoT Hub's rules.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import uuid
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from .clock import NEVER, Clock, iso_timestamp
from .errors import ArgumentInvalid, DeviceAlreadyExists, DeviceNotFound, PreconditionFailed

# Up to 128 characters: ASCII letters, digits and - : . + % _ # * ? ! ( ) , = @ $ '
#: How finely lastActivityTime follows a device's messages (see Registry.touch).
ACTIVITY_RESOLUTION_SECONDS = 1.0

DEVICE_ID_PATTERN = re.compile(r"^[A-Za-z0-9\-:.+%_#*?!(),=@$']{1,128}$")

Status = Literal["enabled", "disabled"]


def validate_device_id(device_id: str) -> str:
    if not isinstance(device_id, str) or not DEVICE_ID_PATTERN.match(device_id):
        raise ArgumentInvalid(
            f"Device id '{str(device_id)[:140]}' is invalid: up to 128 characters of letters, digits "
            "and - : . + % _ # * ? ! ( ) , = @ $ '")
    return device_id


def new_symmetric_key() -> str:
    """A random 256-bit key in base64, like the keys IoT Hub generates."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _check_key(key: str, which: str) -> str:
    try:
        if not base64.b64decode(key, validate=True):
            raise ValueError
    except (binascii.Error, ValueError, TypeError):
        raise ArgumentInvalid(f"The {which} key is not valid base64") from None
    return key


def normalize_etag(etag: str | None) -> str | None:
    """If-Match values arrive quoted (`"abc"`) from HTTP; the model compares bare etags."""
    if etag is None:
        return None
    etag = etag.strip()
    if len(etag) >= 2 and etag[0] == etag[-1] == '"':
        etag = etag[1:-1]
    return etag


def check_if_match(if_match: str | None, current_etag: str, what: str) -> None:
    """None or `*` always match; anything else must equal the current etag (412 otherwise)."""
    wanted = normalize_etag(if_match)
    if wanted in (None, "", "*"):
        return
    if wanted != current_etag:
        raise PreconditionFailed(f"The {what} etag does not match (precondition failed)")


@dataclass
class Device:
    device_id: str
    primary_key: str
    secondary_key: str
    status: Status = "enabled"
    status_reason: str | None = None
    status_updated_time: str = NEVER
    generation_id: str = field(default_factory=lambda: str(uuid.uuid4().int)[:18])
    etag_counter: int = 1
    connection_state: Literal["Connected", "Disconnected"] = "Disconnected"
    connection_state_updated_time: str = NEVER
    last_activity_time: str = NEVER
    cloud_to_device_message_count: int = 0
    model_id: str = ""  # IoT Plug and Play: announced by the device when it connects

    @property
    def etag(self) -> str:
        return base64.b64encode(str(self.etag_counter).encode()).decode("ascii")

    @property
    def enabled(self) -> bool:
        return self.status == "enabled"

    def has_key(self, key: str) -> bool:
        return key in (self.primary_key, self.secondary_key)

    def to_json(self) -> dict[str, Any]:
        """The device identity as IoT Hub's REST API returns it."""
        return {
            "deviceId": self.device_id,
            "moduleId": None,
            "generationId": self.generation_id,
            "etag": self.etag,
            "connectionState": self.connection_state,
            "status": self.status,
            "statusReason": self.status_reason,
            "connectionStateUpdatedTime": self.connection_state_updated_time,
            "statusUpdatedTime": self.status_updated_time,
            "lastActivityTime": self.last_activity_time,
            "cloudToDeviceMessageCount": self.cloud_to_device_message_count,
            "authentication": {
                "symmetricKey": {"primaryKey": self.primary_key, "secondaryKey": self.secondary_key},
                "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
                "type": "sas",
            },
            "capabilities": {"iotEdge": False},
        }

    def to_record(self) -> dict[str, Any]:
        # Every field is a scalar: a flat copy does what dataclasses.asdict does at a tenth of the cost
        # (a device is saved on every connect and disconnect).
        return {name: getattr(self, name) for name in _RECORD_FIELDS}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Device:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in record.items() if k in known})


_RECORD_FIELDS = tuple(f.name for f in fields(Device))


class Registry:
    """Devices by id. Every write bumps the device etag; connection state does not (as on IoT Hub)."""

    def __init__(self, clock: Clock):
        self._clock = clock
        self._devices: dict[str, Device] = {}
        self._last_activity: dict[str, float] = {}  # device id -> when touch() last moved lastActivityTime

    def __contains__(self, device_id: str) -> bool:
        return device_id in self._devices

    def __len__(self) -> int:
        return len(self._devices)

    def load(self, device: Device) -> None:
        self._devices[device.device_id] = device

    def get(self, device_id: str) -> Device:
        try:
            return self._devices[device_id]
        except KeyError:
            raise DeviceNotFound(f"Device {device_id} not registered") from None

    def find(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)

    def list(self, top: int | None = None) -> list[Device]:
        devices = list(self._devices.values())
        return devices if top is None else devices[:max(top, 0)]

    def create(self, device_id: str, *, primary_key: str | None = None, secondary_key: str | None = None,
               status: Status = "enabled", status_reason: str | None = None) -> Device:
        device = self.new_device(device_id, primary_key=primary_key, secondary_key=secondary_key, status=status,
                                 status_reason=status_reason)
        self._devices[device_id] = device
        return device

    def new_device(self, device_id: str, *, primary_key: str | None = None, secondary_key: str | None = None,
                   status: Status = "enabled", status_reason: str | None = None) -> Device:
        """A validated device that is not registered yet (`load()` registers it)."""
        validate_device_id(device_id)
        if device_id in self._devices:
            raise DeviceAlreadyExists(f"A device with ID '{device_id}' is already registered")
        _check_status(status)
        if status_reason is not None and not isinstance(status_reason, str):
            raise ArgumentInvalid("statusReason must be a string")
        now = iso_timestamp(self._clock())
        return Device(
            device_id=device_id,
            primary_key=_check_key(primary_key, "primary") if primary_key else new_symmetric_key(),
            secondary_key=_check_key(secondary_key, "secondary") if secondary_key else new_symmetric_key(),
            status=status, status_reason=status_reason, status_updated_time=now)

    def update(self, device_id: str, *, if_match: str | None = None, status: Status | None = None,
               status_reason: str | None = None, primary_key: str | None = None,
               secondary_key: str | None = None) -> Device:
        device = self.get(device_id)
        check_if_match(if_match, device.etag, "device")
        # Validate everything before changing anything: a refused update leaves the device as it was.
        if status is not None:
            _check_status(status)
        if primary_key:
            _check_key(primary_key, "primary")
        if secondary_key:
            _check_key(secondary_key, "secondary")
        if status is not None and status != device.status:
            device.status = status
            device.status_updated_time = iso_timestamp(self._clock())
        if status_reason is not None:
            device.status_reason = status_reason
        if primary_key:
            device.primary_key = primary_key
        if secondary_key:
            device.secondary_key = secondary_key
        device.etag_counter += 1
        return device

    def delete(self, device_id: str, *, if_match: str | None = None) -> Device:
        device = self.get(device_id)
        check_if_match(if_match, device.etag, "device")
        self._last_activity.pop(device_id, None)
        return self._devices.pop(device_id)

    def set_connected(self, device_id: str, connected: bool) -> Device:
        device = self.get(device_id)
        self._last_activity[device_id] = self._clock()
        now = iso_timestamp(self._last_activity[device_id])
        device.connection_state = "Connected" if connected else "Disconnected"
        device.connection_state_updated_time = now
        device.last_activity_time = now
        return device

    def touch(self, device_id: str) -> bool:
        """Record device activity (any message from it); True when lastActivityTime moved. It moves at
        most once per ACTIVITY_RESOLUTION_SECONDS: a device answering methods by the hundred a second
        costs one update a second, and readers still see its activity to the second."""
        device = self._devices.get(device_id)
        if device is None:
            return False
        now = self._clock()
        if now - self._last_activity.get(device_id, float("-inf")) < ACTIVITY_RESOLUTION_SECONDS:
            return False
        self._last_activity[device_id] = now
        device.last_activity_time = iso_timestamp(now)
        return True


def _check_status(status: str) -> None:
    if status not in ("enabled", "disabled"):
        raise ArgumentInvalid(f"Device status must be 'enabled' or 'disabled', not '{status}'")
