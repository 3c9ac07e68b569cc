"""MQTT 3.1.1 packets -> bytes.

``encode(packet)`` returns the packet's bytes; ``encode_parts(packet)`` returns them as chunks whose
last one is the PUBLISH payload object itself, so a large payload is copied once, when the output
buffer is joined (the session queues these chunks). Encoding validates the packet too and raises
ValueError: a packet that breaks MQTT 3.1.1 is a bug in the caller, not bad input.
"""

from __future__ import annotations

from .packets import (
    SUBACK_FAILURE,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    topic_filter_problem,
    topic_name_problem,
)

__all__ = ["encode", "encode_parts"]


_MAX_REMAINING_LENGTH = 268_435_455  # 0xFF 0xFF 0xFF 0x7F
_MAX_UINT16 = 0xFFFF


def _remaining_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n > _MAX_REMAINING_LENGTH:
        raise ValueError(f"packet too large to encode ({n} bytes)")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _string(value: str, what: str) -> bytes:
    if "\x00" in value:
        raise ValueError(f"{what} contains U+0000")
    data = value.encode("utf-8")  # refuses lone surrogates
    if len(data) > _MAX_UINT16:
        raise ValueError(f"{what} longer than 65535 bytes")
    return len(data).to_bytes(2, "big") + data


def _binary(value: bytes, what: str) -> bytes:
    if len(value) > _MAX_UINT16:
        raise ValueError(f"{what} longer than 65535 bytes")
    return len(value).to_bytes(2, "big") + bytes(value)


def _packet_id(packet_id: int | None) -> bytes:
    if packet_id is None or not 1 <= packet_id <= _MAX_UINT16:
        raise ValueError(f"packet id must be 1..65535, not {packet_id!r}")
    return packet_id.to_bytes(2, "big")


def _qos(qos: int, allowed: tuple[int, ...] = (0, 1, 2)) -> int:
    if qos not in allowed or isinstance(qos, bool):
        raise ValueError(f"invalid QoS {qos!r}")
    return qos


def _frame(first_byte: int, body: bytes) -> list[bytes]:
    return [bytes((first_byte,)) + _remaining_length(len(body)) + body]


def _encode_connect(p: Connect) -> list[bytes]:
    flags = 0x02 if p.clean_session else 0
    payload = [_string(p.client_id, "client id")]
    if p.will is not None:
        will = p.will
        if topic_name_problem(will.topic):
            raise ValueError(topic_name_problem(will.topic))
        flags |= 0x04 | (_qos(will.qos) << 3) | (0x20 if will.retain else 0)
        payload.append(_string(will.topic, "will topic"))
        payload.append(_binary(will.payload, "will payload"))
    if p.username is not None:
        flags |= 0x80
        payload.append(_string(p.username, "username"))
    if p.password is not None:
        if p.username is None:
            raise ValueError("a password needs a username in MQTT 3.1.1")
        flags |= 0x40
        payload.append(_binary(p.password, "password"))
    if not 0 <= p.keepalive <= _MAX_UINT16:
        raise ValueError(f"keepalive must be 0..65535, not {p.keepalive!r}")
    if not 0 <= p.protocol_level <= 0xFF:
        raise ValueError(f"invalid protocol level {p.protocol_level!r}")
    header = _string(p.protocol_name, "protocol name") + bytes((p.protocol_level, flags)) + p.keepalive.to_bytes(2, "big")
    return _frame(0x10, header + b"".join(payload))


def _encode_connack(p: Connack) -> list[bytes]:
    if not 0 <= p.return_code <= 5:
        raise ValueError(f"invalid CONNACK return code {p.return_code!r}")
    if p.session_present and p.return_code != 0:
        raise ValueError("session_present must be False when the connection is refused")
    return [bytes((0x20, 2, 1 if p.session_present else 0, p.return_code))]


def _encode_publish(p: Publish) -> list[bytes]:
    qos = _qos(p.qos)
    problem = topic_name_problem(p.topic)
    if problem:
        raise ValueError(problem)
    if qos == 0:
        if p.packet_id is not None:
            raise ValueError("a QoS 0 PUBLISH has no packet id")
        if p.dup:
            raise ValueError("a QoS 0 PUBLISH cannot be a DUP")
        variable = _string(p.topic, "topic")
    else:
        variable = _string(p.topic, "topic") + _packet_id(p.packet_id)
    first = 0x30 | (0x08 if p.dup else 0) | (qos << 1) | (0x01 if p.retain else 0)
    head = bytes((first,)) + _remaining_length(len(variable) + len(p.payload)) + variable
    return [head, p.payload] if p.payload else [head]


def _encode_id_only(first_byte: int):
    def encode_id_only(p) -> list[bytes]:
        return [bytes((first_byte, 2)) + _packet_id(p.packet_id)]
    return encode_id_only


def _encode_subscribe(p: Subscribe) -> list[bytes]:
    if not p.topics:
        raise ValueError("SUBSCRIBE needs at least one topic filter")
    parts = [_packet_id(p.packet_id)]
    for topic_filter, qos in p.topics:
        problem = topic_filter_problem(topic_filter)
        if problem:
            raise ValueError(problem)
        parts.append(_string(topic_filter, "topic filter") + bytes((_qos(qos),)))
    return _frame(0x82, b"".join(parts))


def _encode_suback(p: Suback) -> list[bytes]:
    if not p.return_codes:
        raise ValueError("SUBACK needs at least one return code")
    for code in p.return_codes:
        if code not in (0, 1, 2, SUBACK_FAILURE):
            raise ValueError(f"invalid SUBACK return code {code!r}")
    return _frame(0x90, _packet_id(p.packet_id) + bytes(p.return_codes))


def _encode_unsubscribe(p: Unsubscribe) -> list[bytes]:
    if not p.topics:
        raise ValueError("UNSUBSCRIBE needs at least one topic filter")
    parts = [_packet_id(p.packet_id)]
    for topic_filter in p.topics:
        problem = topic_filter_problem(topic_filter)
        if problem:
            raise ValueError(problem)
        parts.append(_string(topic_filter, "topic filter"))
    return _frame(0xA2, b"".join(parts))


_PINGREQ = b"\xc0\x00"
_PINGRESP = b"\xd0\x00"
_DISCONNECT = b"\xe0\x00"

_ENCODERS = {
    Connect: _encode_connect,
    Connack: _encode_connack,
    Publish: _encode_publish,
    Puback: _encode_id_only(0x40),
    Pubrec: _encode_id_only(0x50),
    Pubrel: _encode_id_only(0x62),
    Pubcomp: _encode_id_only(0x70),
    Subscribe: _encode_subscribe,
    Suback: _encode_suback,
    Unsubscribe: _encode_unsubscribe,
    Unsuback: _encode_id_only(0xB0),
    Pingreq: lambda p: [_PINGREQ],
    Pingresp: lambda p: [_PINGRESP],
    Disconnect: lambda p: [_DISCONNECT],
}


def encode_parts(packet: Packet) -> list[bytes]:
    """The packet's bytes as chunks to write in order; a PUBLISH payload is passed through uncopied."""
    try:
        encoder = _ENCODERS[type(packet)]
    except KeyError:
        raise TypeError(f"not an MQTT packet: {packet!r}") from None
    return encoder(packet)


def encode(packet: Packet) -> bytes:
    """The packet's bytes on the wire; ValueError if the packet breaks MQTT 3.1.1."""
    parts = encode_parts(packet)
    return parts[0] if len(parts) == 1 else b"".join(parts)
