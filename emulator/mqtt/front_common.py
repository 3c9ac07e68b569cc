"""What the IoT Hub front (device_front.py) and the DPS front (dps_front.py) share: the ``ClientConnection`` a
front talks to, how a front refuses a CONNECT or drops a misbehaving client, and topic and payload
parsing."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any, Protocol

from mqttcodec.packets import CONNACK_NOT_AUTHORIZED
from .session import ServerConnection

__all__ = ["ClientConnection", "RefusedConnect", "Violation", "parse_topic_query", "parse_properties", "parse_json"]


class ClientConnection(Protocol):
    """One network connection, as the front sees it."""

    connection: ServerConnection
    peer: str

    def flush(self) -> None:
        """Write what the session queued; close the transport once the session is closed."""


class RefusedConnect(Exception):
    """A CONNECT the front refuses: ``reason`` is logged with ``hint``, the likely fix (never a secret)."""

    def __init__(self, reason: str, return_code: int = CONNACK_NOT_AUTHORIZED, *, hint: str = ""):
        super().__init__(reason)
        self.return_code = return_code
        self.hint = hint


class Violation(Exception):
    """The client broke IoT Hub's rules badly enough that IoT Hub would drop the connection."""


def parse_topic_query(topic: str) -> tuple[str, dict[str, str]]:
    """`path/?a=1&b=2` -> (path, {a: 1, b: 2})."""
    path, _, query = topic.partition("?")
    return path, dict(parse_properties(query))


def parse_properties(encoded: str) -> list[tuple[str, str]]:
    """`%24.mid=1&k=v` -> pairs. '+' is a plus here (the SDKs quote, not quote_plus)."""
    pairs = []
    for part in encoded.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((urllib.parse.unquote(key), urllib.parse.unquote(value)))
    return pairs


def parse_json(payload: bytes) -> Any:
    """Decode a JSON payload; ValueError when it is not JSON (or nests too deep to decode)."""
    try:
        return json.loads(payload.decode("utf-8")) if payload.strip() else None
    except RecursionError:
        raise ValueError("the JSON nests too deep") from None
