"""MQTT 3.1.1 packets as values: the 14 packet dataclasses, the ``Packet`` union, the CONNACK and
SUBACK return codes, ``ProtocolError``, and the topic rules both directions check.

No bytes here: ``encoder.py`` turns packets into bytes, ``decoder.py`` bytes into packets, and
``codec.py`` is the public facade over all three (see its docstring for the codec as a whole).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

__all__ = [
    "ProtocolError",
    "Will",
    "Connect",
    "Connack",
    "Publish",
    "Puback",
    "Pubrec",
    "Pubrel",
    "Pubcomp",
    "Subscribe",
    "Suback",
    "Unsubscribe",
    "Unsuback",
    "Pingreq",
    "Pingresp",
    "Disconnect",
    "Packet",
    "DEFAULT_MAX_PACKET_SIZE",
    "CONNACK_ACCEPTED",
    "CONNACK_UNACCEPTABLE_PROTOCOL",
    "CONNACK_IDENTIFIER_REJECTED",
    "CONNACK_SERVER_UNAVAILABLE",
    "CONNACK_BAD_CREDENTIALS",
    "CONNACK_NOT_AUTHORIZED",
    "SUBACK_FAILURE",
]

# IoT Hub's largest device-to-cloud message is 256 KB; the rest is room for the topic and headers.
DEFAULT_MAX_PACKET_SIZE = 256 * 1024 + 1024

CONNACK_ACCEPTED = 0
CONNACK_UNACCEPTABLE_PROTOCOL = 1
CONNACK_IDENTIFIER_REJECTED = 2
CONNACK_SERVER_UNAVAILABLE = 3
CONNACK_BAD_CREDENTIALS = 4
CONNACK_NOT_AUTHORIZED = 5
SUBACK_FAILURE = 0x80


class ProtocolError(Exception):
    """Malformed or unsupported bytes: the server drops the connection."""


# --------------------------------------------------------------------------------------------------
# Packets


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Connect:
    client_id: str
    username: str | None = None
    password: bytes | None = None
    keepalive: int = 60
    clean_session: bool = True
    protocol_name: str = "MQTT"
    protocol_level: int = 4
    will: Will | None = None


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    return_code: int


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes = b""
    qos: int = 0
    packet_id: int | None = None
    dup: bool = False
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Puback:
    packet_id: int


@dataclass(frozen=True, slots=True)
class Pubrec:
    packet_id: int


@dataclass(frozen=True, slots=True)
class Pubrel:
    packet_id: int


@dataclass(frozen=True, slots=True)
class Pubcomp:
    packet_id: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    topics: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Suback:
    packet_id: int
    return_codes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unsuback:
    packet_id: int


@dataclass(frozen=True, slots=True)
class Pingreq:
    pass


@dataclass(frozen=True, slots=True)
class Pingresp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    pass


Packet = Union[
    Connect, Connack, Publish, Puback, Pubrec, Pubrel, Pubcomp,
    Subscribe, Suback, Unsubscribe, Unsuback, Pingreq, Pingresp, Disconnect,
]



# --------------------------------------------------------------------------------------------------
# Topic rules checked by both directions (each returns an error message or None): the encoder
# raises ValueError with it, the decoder ProtocolError.


def topic_name_problem(topic: str) -> str | None:
    if not topic:
        return "empty topic name"
    if "+" in topic or "#" in topic:
        return f"wildcard in topic name {topic!r}"
    return None


def topic_filter_problem(topic_filter: str) -> str | None:
    if not topic_filter:
        return "empty topic filter"
    if "#" in topic_filter:
        if topic_filter.count("#") != 1 or not (topic_filter == "#" or topic_filter.endswith("/#")):
            return f"misplaced '#' in topic filter {topic_filter!r}"
    if "+" in topic_filter:
        for level in topic_filter.split("/"):
            if "+" in level and level != "+":
                return f"misplaced '+' in topic filter {topic_filter!r}"
    return None
