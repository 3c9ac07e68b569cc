"""A fleet from a file of device connection strings (one per line; blank lines and # comments skipped),
e.g. devices created on a real IoT hub with `az iot hub device-identity connection-string show`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

from hubsettings import DeviceSettings, SettingsError, mask_key, mask_secrets, parse_connection_string

from ..errors import SettingsProblem

MAX_DEVICES = 10000
Resolve = Callable[[Mapping[str, str | None]], DeviceSettings]


def read_connection_strings(path: Path, resolve: Resolve) -> list[DeviceSettings]:
    """One DeviceSettings per line. A bad line is a SettingsProblem naming the file and line, key masked."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsProblem(f"connection strings file {path} cannot be read: "
                              f"{getattr(e, 'strerror', None) or e}") from None
    devices: list[DeviceSettings] = []
    first_line: dict[str, int] = {}
    by_host: dict[str, DeviceSettings] = {}  # trust (CA) is decided once per host
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"connection strings file {path} line {number}"
        try:
            cs = parse_connection_string(line, expect="device", what=where)
        except SettingsError as e:
            raise SettingsProblem(mask_secrets(f"{e} ({masked_line(line)[:300]})")) from None
        if not cs.shared_access_key:
            raise SettingsProblem(f"{where}: no SharedAccessKey ({cs.masked()}); the fleet simulates "
                                  "symmetric-key devices only")
        device_id = cs.device_id or ""
        if device_id in first_line:
            raise SettingsProblem(f"{where}: device {device_id} is also on line {first_line[device_id]}")
        first_line[device_id] = number
        template = by_host.get(cs.host_name)
        if template is None:
            try:
                template = by_host[cs.host_name] = resolve({"IOTHUB_DEVICE_CONNECTION_STRING": line})
            except SettingsError as e:
                raise SettingsProblem(mask_secrets(f"{where}: {e}")) from None
            devices.append(template)
        else:
            devices.append(dataclasses.replace(template, connection_string=cs, source=template.source))
        if len(devices) > MAX_DEVICES:
            raise SettingsProblem(f"{where}: more than {MAX_DEVICES:,} devices (one process simulates at most "
                                  f"{MAX_DEVICES:,}; split the file)")
    if not devices:
        raise SettingsProblem(f"connection strings file {path} holds no connection strings")
    return devices


def masked_line(line: str) -> str:
    """A line that did not parse, with the value of every part that looks like a key masked (even a
    misspelled SharedAccessKey), for the error message."""
    parts = []
    for part in line.split(";"):
        name, sep, value = part.partition("=")
        secret = sep and any(word in name.lower() for word in ("key", "sig", "secret", "password"))
        parts.append(f"{name}={mask_key(value)}" if secret else part)
    return ";".join(parts)
