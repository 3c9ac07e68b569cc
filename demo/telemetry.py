"""Reading what telemetry the local emulator received: its emulator-only route
`GET /_emulator/devices/{id}/messages`, authorised like every service route (a policy SAS token).

IoT Hub itself has no such route: device-to-cloud messages go to its Event Hubs-compatible endpoint
(AMQP), which the service SDK does not read. The demo says so when it uses this.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from hubsettings import EmulatorInfo, build_token, parse_connection_string

from .steps import StepFailed

API_VERSION = "2021-04-12"
MESSAGES_PATH = "/_emulator/devices/{device_id}/messages"


def received_messages(info: EmulatorInfo, device_id: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The messages the emulator holds for device_id, oldest first (its buffer is bounded)."""
    cs = parse_connection_string(info.service_connection_string, expect="service")
    token = build_token(cs.host_name, cs.shared_access_key or "", policy=cs.shared_access_key_name)
    path = MESSAGES_PATH.format(device_id=urllib.parse.quote(device_id, safe=""))
    url = f"https://{cs.host_name}{path}?api-version={API_VERSION}"
    request = urllib.request.Request(url, headers={"Authorization": token, "Accept": "application/json"})
    context = ssl.create_default_context(cafile=info.ca_file)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            data = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        raise StepFailed(f"GET {path} answered {e.code}: {e.read()[:200]!r}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise StepFailed(f"GET {path} failed: {getattr(e, 'reason', e)}") from None
    messages = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(messages, list):
        raise StepFailed(f"GET {path} answered without a messages list")
    return messages
