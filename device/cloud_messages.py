"""Cloud-to-device messages as the listener prints them: one line with the body and the properties.

`message 8f3c... from the cloud: "open the valve" {"zone":"3"} (content-type application/json)`
"""

from __future__ import annotations

import json
from typing import Any

BODY_LIMIT = 200  # characters of the body shown on the line; JSON lines carry the whole body


def body_text(data: Any) -> str:
    """The body as text (UTF-8), or a hex preview when it is binary."""
    if isinstance(data, str):
        return data
    raw = bytes(data or b"")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(raw)} bytes: {raw[:32].hex()}{'...' if len(raw) > 32 else ''}>"


def system_properties(message: Any) -> dict[str, str]:
    """The message's system properties that were set (the SDK's Message attributes)."""
    names = (("messageId", "message_id"), ("correlationId", "correlation_id"), ("userId", "user_id"),
             ("contentType", "content_type"), ("contentEncoding", "content_encoding"),
             ("expiryTimeUtc", "expiry_time_utc"), ("ack", "ack"))
    found = {wire: getattr(message, attr, None) for wire, attr in names}
    return {k: str(v) for k, v in found.items() if v not in (None, "")}


def describe(message: Any) -> tuple[str, dict[str, Any]]:
    """(the event line, the data JSON lines carry) for a received azure.iot.device Message."""
    body = body_text(message.data)
    properties = dict(getattr(message, "custom_properties", None) or {})
    system = system_properties(message)
    shown = body if len(body) <= BODY_LIMIT else body[:BODY_LIMIT] + "…"
    line = f"message {system.get('messageId', '?')} from the cloud: {json.dumps(shown, ensure_ascii=False)}"
    if properties:
        line += " " + json.dumps(properties, separators=(",", ":"), sort_keys=True)
    extras = [f"{name} {system[name]}" for name in ("correlationId", "contentType", "contentEncoding")
              if name in system]
    if extras:
        line += f" ({', '.join(extras)})"
    return line, {"body": body, "properties": properties, "systemProperties": system}
