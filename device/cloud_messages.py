"""Cloud-to-device messages as the listener prints them: one line with the body and the properties.

`message 8f3c... from the cloud: "open the valve" {"zone":"3"} (content-type application/json)`
"""

from __future__ import annotations

import json
import urllib.parse
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


#: The SDK's Message attributes and the MQTT property-bag names of the system properties, by wire name.
SYSTEM_PROPERTIES = (("messageId", "message_id", "$.mid"), ("correlationId", "correlation_id", "$.cid"),
                     ("userId", "user_id", "$.uid"), ("contentType", "content_type", "$.ct"),
                     ("contentEncoding", "content_encoding", "$.ce"), ("expiryTimeUtc", "expiry_time_utc", "$.exp"),
                     ("ack", "ack", "iothub-ack"))


def system_properties(message: Any) -> dict[str, str]:
    """The message's system properties that were set (the SDK's Message attributes)."""
    found = {wire: getattr(message, attr, None) for wire, attr, _ in SYSTEM_PROPERTIES}
    return {k: str(v) for k, v in found.items() if v not in (None, "")}


def from_topic(topic: str) -> tuple[dict[str, str], dict[str, str]]:
    """(application properties, system properties) of `devices/{id}/messages/devicebound/{bag}`, for
    clients that read MQTT themselves (the lean fleet engine) rather than through the SDK."""
    bag = topic.split("/messages/devicebound/", 1)[1] if "/messages/devicebound/" in topic else ""
    pairs = [pair.partition("=") for pair in bag.split("&") if pair]
    decoded = {urllib.parse.unquote(k): urllib.parse.unquote(v) for k, _, v in pairs}
    by_bag_name = {bag_name: wire for wire, _, bag_name in SYSTEM_PROPERTIES}
    system = {by_bag_name[k]: v for k, v in decoded.items() if k in by_bag_name}
    application = {k: v for k, v in decoded.items() if k not in by_bag_name and not k.startswith("$.")}
    return application, system


def describe(message: Any) -> tuple[str, dict[str, Any]]:
    """(the event line, the data JSON lines carry) for a received azure.iot.device Message."""
    return describe_parts(message.data, dict(getattr(message, "custom_properties", None) or {}),
                          system_properties(message))


def describe_parts(data: Any, properties: dict[str, str], system: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The same line from a body and its properties (see `from_topic` for MQTT's property bag)."""
    body = body_text(data)
    shown = body if len(body) <= BODY_LIMIT else body[:BODY_LIMIT] + "…"
    line = f"message {system.get('messageId', '?')} from the cloud: {json.dumps(shown, ensure_ascii=False)}"
    if properties:
        line += " " + json.dumps(properties, separators=(",", ":"), sort_keys=True)
    extras = [f"{name} {system[name]}" for name in ("correlationId", "contentType", "contentEncoding")
              if name in system]
    if extras:
        line += f" ({', '.join(extras)})"
    return line, {"body": body, "properties": properties, "systemProperties": system}
