"""MQTT 3.1.1 packets as values, and bytes <-> packets with no sockets: the public facade.

The codec lives in three modules, re-exported here under the names docs/emulator-internals.md lists:
- ``packets.py``: the packet dataclasses, ``Packet``, the return-code constants, ``ProtocolError``;
- ``encoder.py``: ``encode`` and ``encode_parts`` (packets -> bytes, validating; ValueError);
- ``decoder.py``: ``PacketReader`` (bytes -> packets, strict; ProtocolError).

A package of its own because both sides use it: the emulator plays the server (emulator/mqtt), the
device fleet and the benchmarks play clients (device/fleet), so all 14 packet types encode and decode in
both directions.

Additions to docs/emulator-internals.md, none of which changes what the contract lists:
- ``Pubrec``, ``Pubrel``, ``Pubcomp`` and ``Unsuback`` are separate classes shaped like ``Puback``.
- ``Will`` fields ``qos`` and ``retain`` have defaults.
- ``PacketReader`` also has a pull API, ``append(data)`` + ``next_packet()``, and ``buffered``.
- ``encode_parts(packet)`` returns the encoding as chunks whose last one is the PUBLISH payload
  object itself, so a large payload is copied once, when the output buffer is joined.
- A non-minimal remaining-length encoding (e.g. ``80 00``) is accepted: 3.1.1, unlike MQTT 5, does
  not forbid it.
"""

from __future__ import annotations

from .decoder import PacketReader
from .encoder import encode, encode_parts
from .packets import (
    CONNACK_ACCEPTED,
    CONNACK_BAD_CREDENTIALS,
    CONNACK_IDENTIFIER_REJECTED,
    CONNACK_NOT_AUTHORIZED,
    CONNACK_SERVER_UNAVAILABLE,
    CONNACK_UNACCEPTABLE_PROTOCOL,
    DEFAULT_MAX_PACKET_SIZE,
    SUBACK_FAILURE,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    ProtocolError,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
)

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
    "encode",
    "encode_parts",
    "PacketReader",
    "DEFAULT_MAX_PACKET_SIZE",
    "CONNACK_ACCEPTED",
    "CONNACK_UNACCEPTABLE_PROTOCOL",
    "CONNACK_IDENTIFIER_REJECTED",
    "CONNACK_SERVER_UNAVAILABLE",
    "CONNACK_BAD_CREDENTIALS",
    "CONNACK_NOT_AUTHORIZED",
    "SUBACK_FAILURE",
]
