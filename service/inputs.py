"""Parsing of user input that must fail before any network call: JSON options, times, device targets."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from hubsettings import limits

from .errors import BadInput

_RELATIVE_TIME = re.compile(r"^\+(\d+)\s*([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_json_option(text: str | None, option: str, *, want_object: bool = False) -> Any:
    """JSON given inline or as @file (@- is not supported: stdin is the terminal here)."""
    if text is None:
        return None
    source = text
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as e:
            raise BadInput(f"{option}: cannot read {path}: {e.strerror or e}") from None
    try:
        value = json.loads(source, parse_constant=_refuse_constant)
    except ValueError as e:
        raise BadInput(f"{option} is not valid JSON: {e}") from None
    if want_object and not isinstance(value, dict):
        raise BadInput(f"{option} must be a JSON object, like '{{\"key\": \"value\"}}'")
    return value


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are Python's JSON extensions; the hub rejects them, so refuse them here."""
    raise ValueError(f"{name} is not JSON")


def check_method_payload(payload: Any, option: str = "--payload") -> None:
    if payload is not None and len(json.dumps(payload).encode()) > limits.METHOD_PAYLOAD_MAX_BYTES:
        limit_kb = limits.METHOD_PAYLOAD_MAX_BYTES // 1024
        raise BadInput(f"{option} is larger than IoT Hub's {limit_kb} KB limit for method payloads")


def parse_start_time(text: str, now: dt.datetime) -> dt.datetime:
    """'now', '+30s' / '+10m' / '+1h' / '+2d', or ISO 8601 (UTC when it has no offset)."""
    value = text.strip().lower()
    if value == "now":
        return now
    relative = _RELATIVE_TIME.match(value)
    if relative:
        return now + dt.timedelta(seconds=int(relative.group(1)) * _UNIT_SECONDS[relative.group(2)])
    try:
        parsed = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadInput(f"--start-time '{text}' is not ISO 8601, 'now' or +N[s|m|h|d]") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


def quote_query_string(value: str, what: str) -> str:
    """A single-quoted query literal. IoT Hub has no documented escape for ', so refuse it."""
    if "'" in value:
        raise BadInput(f"{what} '{value}' contains a single quote, which a hub query cannot carry")
    return f"'{value}'"


def devices_condition(device_ids: tuple[str, ...]) -> str:
    """The job WHERE clause for explicit devices: deviceId IN ['a','b']."""
    quoted = ",".join(quote_query_string(d, "device id") for d in dict.fromkeys(device_ids))
    return f"deviceId IN [{quoted}]"


def parse_expected_value(text: str) -> Any:
    """--equals VALUE: JSON when it parses (5, true, "x", {...}), else the text itself (running)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def reported_value(twin: dict, path: str) -> Any:
    """The reported property at a dotted path (None when absent)."""
    node: Any = (twin.get("properties") or {}).get("reported") or {}
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
