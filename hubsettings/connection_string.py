"""Parsing and validation of IoT Hub connection strings, with errors that name the bad part.

Accepts what the SDKs accept (HostName, DeviceId, ModuleId, SharedAccessKey, SharedAccessKeyName,
SharedAccessSignature, GatewayHostName, x509) and checks more: key names are matched exactly, values
must be non-empty, keys must be base64, and the kind (device or service) must fit where it is used.
No error message ever contains the key; str() masks it.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from .errors import SettingsError
from .masking import mask_key

_VALID_KEYS = (
    "HostName", "DeviceId", "ModuleId", "SharedAccessKey", "SharedAccessKeyName",
    "SharedAccessSignature", "GatewayHostName", "x509",
)
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-\[\]:]+$")


class ConnectionStringError(SettingsError):
    """A connection string that cannot be used. The message names the part, never the key."""


@dataclass(frozen=True)
class ConnectionString:
    host_name: str
    device_id: str | None = None
    module_id: str | None = None
    shared_access_key: str | None = None
    shared_access_key_name: str | None = None
    gateway_host_name: str | None = None
    _raw: str = ""

    @property
    def kind(self) -> Literal["device", "service"]:
        return "device" if self.device_id else "service"

    @property
    def raw(self) -> str:
        """The original text, for handing to the SDK. Never print it: use str() or masked()."""
        return self._raw

    @property
    def host(self) -> str:
        """HostName without a port."""
        return split_host_port(self.host_name)[0]

    @property
    def port(self) -> int | None:
        return split_host_port(self.host_name)[1]

    def masked(self) -> str:
        parts = [f"HostName={self.host_name}"]
        if self.device_id:
            parts.append(f"DeviceId={self.device_id}")
        if self.module_id:
            parts.append(f"ModuleId={self.module_id}")
        if self.shared_access_key_name:
            parts.append(f"SharedAccessKeyName={self.shared_access_key_name}")
        if self.shared_access_key:
            parts.append(f"SharedAccessKey={mask_key(self.shared_access_key)}")
        if self.gateway_host_name:
            parts.append(f"GatewayHostName={self.gateway_host_name}")
        return ";".join(parts)

    def __str__(self) -> str:
        return self.masked()

    def __repr__(self) -> str:
        return f"ConnectionString({self.masked()!r})"


def split_host_port(host_name: str) -> tuple[str, int | None]:
    """'localhost:9443' -> ('localhost', 9443); '[::1]:9443' -> ('::1', 9443); 'h' -> ('h', None)."""
    if host_name.startswith("["):
        host, _, rest = host_name[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if host_name.count(":") == 1:
        host, _, port = host_name.partition(":")
        if port.isdigit():
            return host, int(port)
    return host_name, None


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback IPs (127.0.0.0/8, ::1): the local emulator's kind of address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_key(key: str, what: str) -> None:
    try:
        decoded = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise ConnectionStringError(f"{what}: SharedAccessKey is not valid base64") from None
    if not decoded:
        raise ConnectionStringError(f"{what}: SharedAccessKey is empty")


def parse_connection_string(text: str, *, expect: Literal["device", "service"] | None = None,
                            what: str = "connection string") -> ConnectionString:
    """Parse and validate; `expect` checks that the string is of the kind the caller needs."""
    if text is None or not str(text).strip():
        raise ConnectionStringError(f"{what} is empty")
    text = str(text).strip().strip('"').strip("'")
    fields: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue  # tolerate a trailing ';' as the Azure portal's copies sometimes have
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise ConnectionStringError(f"{what}: '{name[:20]}' is not of the form Name=value")
        if name not in _VALID_KEYS:
            close = [k for k in _VALID_KEYS if k.lower() == name.lower()]
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConnectionStringError(f"{what}: unknown part '{name[:40]}'{hint}")
        if name in fields:
            raise ConnectionStringError(f"{what}: {name} appears twice")
        if not value.strip():
            raise ConnectionStringError(f"{what}: {name} is empty")
        fields[name] = value.strip()

    host = fields.get("HostName")
    if not host:
        raise ConnectionStringError(f"{what}: HostName is missing")
    if not _HOST_RE.match(host):
        raise ConnectionStringError(f"{what}: HostName '{host[:80]}' is not a host name")
    if "x509" in fields:
        raise ConnectionStringError(f"{what}: x509 authentication is not supported; use SharedAccessKey")
    if "SharedAccessSignature" in fields and "SharedAccessKey" not in fields:
        raise ConnectionStringError(
            f"{what}: SharedAccessSignature strings expire; use one with SharedAccessKey")
    key = fields.get("SharedAccessKey")
    if not key:
        raise ConnectionStringError(f"{what}: SharedAccessKey is missing")
    _check_key(key, what)

    cs = ConnectionString(
        host_name=host,
        device_id=fields.get("DeviceId"),
        module_id=fields.get("ModuleId"),
        shared_access_key=key,
        shared_access_key_name=fields.get("SharedAccessKeyName"),
        gateway_host_name=fields.get("GatewayHostName"),
        _raw=";".join(f"{k}={v}" for k, v in fields.items()),
    )
    if cs.module_id and not cs.device_id:
        raise ConnectionStringError(f"{what}: ModuleId needs a DeviceId")
    if not cs.device_id and not cs.shared_access_key_name:
        raise ConnectionStringError(
            f"{what}: needs DeviceId (a device connection string) or SharedAccessKeyName (a service one)")
    if expect == "device" and cs.kind != "device":
        raise ConnectionStringError(
            f"{what}: this is a service (policy) connection string; a device needs one with DeviceId")
    if expect == "service" and cs.kind != "service":
        raise ConnectionStringError(
            f"{what}: this is a device connection string; the service side needs one with SharedAccessKeyName "
            "(e.g. the iothubowner policy)")
    return cs
