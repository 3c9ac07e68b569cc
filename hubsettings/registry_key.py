"""A registered device's key, read from a running local emulator's registry with its service policy.

Lets `iothub-device --device-id d2` run a device created with `iothub-service device create d2`: the
emulator's discovery file carries its (well-known, development-only) service connection string. Only
ever used against the local emulator, never against a real hub.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from pathlib import Path

from .connection_string import parse_connection_string, split_host_port
from .discovery import EmulatorInfo
from .sas import build_token

API_VERSION = "2021-04-12"
TIMEOUT_SECONDS = 5.0


def registered_device_key(emulator: EmulatorInfo, device_id: str, ca_file: Path | None) -> str | None:
    """The device's primary key when the emulator has it registered with a symmetric key; None when it is
    not registered or the emulator cannot be asked (the caller then provisions through DPS)."""
    try:
        cs = parse_connection_string(emulator.service_connection_string, expect="service")
        host, _ = split_host_port(cs.host_name)
        token = build_token(host, cs.shared_access_key, policy=cs.shared_access_key_name, ttl=300)
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        connection = http.client.HTTPSConnection(emulator.rest_address, emulator.rest_port, context=context,
                                                 timeout=TIMEOUT_SECONDS)
        try:
            path = f"/devices/{urllib.parse.quote(device_id, safe='')}?api-version={API_VERSION}"
            connection.request("GET", path, headers={"Authorization": token, "Host": host})
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
    except (OSError, ValueError, ssl.SSLError, http.client.HTTPException):
        return None
    if response.status != 200:
        return None
    try:
        keys = json.loads(body)["authentication"]["symmetricKey"]
        return keys.get("primaryKey") or None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
