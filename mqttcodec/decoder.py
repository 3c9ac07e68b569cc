"""Bytes -> MQTT 3.1.1 packets: ``PacketReader`` turns a byte stream, split anywhere, into packets.

Decoding is strict (the server drops the connection on any ProtocolError, which is what the spec asks
of it): reserved flag bits, a remaining length of at most 4 bytes, well-formed UTF-8 without U+0000,
QoS 3, packet id 0, DUP on QoS 0, wildcards in a PUBLISH topic, malformed topic filters, empty
SUBSCRIBE/UNSUBSCRIBE/SUBACK, fixed-length packets of the wrong length, bytes left over at the end
of a packet, and packets larger than ``max_packet_size`` (refused as soon as the remaining length is
known, before any of the body is buffered). A non-minimal remaining-length encoding (e.g. ``80 00``)
is accepted: 3.1.1, unlike MQTT 5, does not forbid it.

Protocol versions: CONNECT with protocol name "MQTT" level 4 (3.1.1) or "MQIsdp" level 3 (3.1,
same layout) is decoded in full. Any other level under either name is decoded only as far as the
level, connect flags and keepalive (the rest of an MQTT 5 CONNECT has a different layout) with
``client_id=""``, so that the session can answer it with CONNACK 1 (unacceptable protocol version) as
[MQTT-3.1.2-2] requires. The session refuses MQIsdp/3 the same way: IoT Hub speaks 3.1.1 only.
Any other protocol name is a ProtocolError.

Besides ``feed(data)``, ``PacketReader`` has a pull API, ``append(data)`` + ``next_packet()``, used by
the session to stop decoding at CONNECT until the application has accepted it, and ``buffered``.
"""

from __future__ import annotations

from .packets import (
    DEFAULT_MAX_PACKET_SIZE,
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
    topic_filter_problem,
    topic_name_problem,
)

__all__ = ["PacketReader"]


# Packet type numbers (the high nibble of the first byte) and the flags each type must carry.
_TYPE_NUMBER: dict[type, int] = {
    Connect: 1, Connack: 2, Publish: 3, Puback: 4, Pubrec: 5, Pubrel: 6, Pubcomp: 7,
    Subscribe: 8, Suback: 9, Unsubscribe: 10, Unsuback: 11, Pingreq: 12, Pingresp: 13, Disconnect: 14,
}
_REQUIRED_FLAGS: dict[int, int] = {
    1: 0, 2: 0, 4: 0, 5: 0, 6: 0b0010, 7: 0, 8: 0b0010, 9: 0, 10: 0b0010, 11: 0, 12: 0, 13: 0, 14: 0,
}
_TYPE_NAME = {number: cls.__name__.upper() for cls, number in _TYPE_NUMBER.items()}


# --------------------------------------------------------------------------------------------------
# Each decoder gets the fixed header's flags and a memoryview of exactly the packet's body.


def _read_uint16(body: memoryview, pos: int, what: str) -> tuple[int, int]:
    if pos + 2 > len(body):
        raise ProtocolError(f"truncated {what}")
    return (body[pos] << 8) | body[pos + 1], pos + 2


def _read_binary(body: memoryview, pos: int, what: str) -> tuple[memoryview, int]:
    length, pos = _read_uint16(body, pos, f"{what} length")
    end = pos + length
    if end > len(body):
        raise ProtocolError(f"truncated {what}")
    return body[pos:end], end


def _read_string(body: memoryview, pos: int, what: str) -> tuple[str, int]:
    raw, pos = _read_binary(body, pos, what)
    try:
        value = str(raw, "utf-8")  # strict: refuses ill-formed UTF-8 and encoded surrogates
    except UnicodeDecodeError:
        raise ProtocolError(f"{what} is not valid UTF-8") from None
    if "\x00" in value:
        raise ProtocolError(f"{what} contains U+0000")
    return value, pos


def _read_packet_id(body: memoryview, pos: int) -> tuple[int, int]:
    packet_id, pos = _read_uint16(body, pos, "packet id")
    if packet_id == 0:
        raise ProtocolError("packet id 0")
    return packet_id, pos


def _expect_end(body: memoryview, pos: int, what: str) -> None:
    if pos != len(body):
        raise ProtocolError(f"{len(body) - pos} unexpected bytes at the end of {what}")


def _decode_connect(flags: int, body: memoryview) -> Connect:
    protocol_name, pos = _read_string(body, 0, "protocol name")
    if protocol_name not in ("MQTT", "MQIsdp"):
        raise ProtocolError(f"unknown protocol name {protocol_name!r}")
    if pos + 4 > len(body):
        raise ProtocolError("truncated CONNECT variable header")
    level, connect_flags = body[pos], body[pos + 1]
    keepalive = (body[pos + 2] << 8) | body[pos + 3]
    pos += 4
    clean_session = bool(connect_flags & 0x02)
    if (protocol_name, level) not in (("MQTT", 4), ("MQIsdp", 3)):
        # Another version: its payload may be laid out differently. Keep what the session needs to
        # answer CONNACK 1 and stop here.
        return Connect(client_id="", keepalive=keepalive, clean_session=clean_session,
                       protocol_name=protocol_name, protocol_level=level)
    if connect_flags & 0x01:
        raise ProtocolError("reserved CONNECT flag set")
    will_flag = connect_flags & 0x04
    will_qos = (connect_flags >> 3) & 0x03
    will_retain = bool(connect_flags & 0x20)
    if will_flag:
        if will_qos == 3:
            raise ProtocolError("will QoS 3")
    elif will_qos or will_retain:
        raise ProtocolError("will QoS or retain set without a will")
    has_username = connect_flags & 0x80
    has_password = connect_flags & 0x40
    if has_password and not has_username:
        raise ProtocolError("password flag set without username flag")

    client_id, pos = _read_string(body, pos, "client id")
    will = None
    if will_flag:
        will_topic, pos = _read_string(body, pos, "will topic")
        problem = topic_name_problem(will_topic)
        if problem:
            raise ProtocolError(problem)
        will_payload, pos = _read_binary(body, pos, "will payload")
        will = Will(will_topic, bytes(will_payload), will_qos, will_retain)
    username = password = None
    if has_username:
        username, pos = _read_string(body, pos, "username")
    if has_password:
        raw_password, pos = _read_binary(body, pos, "password")
        password = bytes(raw_password)
    _expect_end(body, pos, "CONNECT")
    return Connect(client_id, username, password, keepalive, clean_session, protocol_name, level, will)


def _decode_connack(flags: int, body: memoryview) -> Connack:
    if len(body) != 2:
        raise ProtocolError(f"CONNACK remaining length {len(body)}, expected 2")
    ack_flags, return_code = body[0], body[1]
    if ack_flags & 0xFE:
        raise ProtocolError("reserved CONNACK flag set")
    if return_code > 5:
        raise ProtocolError(f"reserved CONNACK return code {return_code}")
    if ack_flags and return_code:
        raise ProtocolError("session present on a refused connection")
    return Connack(bool(ack_flags), return_code)


def _decode_publish(flags: int, body: memoryview) -> Publish:
    qos = (flags >> 1) & 0x03
    dup = bool(flags & 0x08)
    if qos == 3:
        raise ProtocolError("PUBLISH with QoS 3")
    if dup and qos == 0:
        raise ProtocolError("DUP set on a QoS 0 PUBLISH")
    topic, pos = _read_string(body, 0, "topic name")
    problem = topic_name_problem(topic)
    if problem:
        raise ProtocolError(problem)
    packet_id = None
    if qos:
        packet_id, pos = _read_packet_id(body, pos)
    return Publish(topic, bytes(body[pos:]), qos, packet_id, dup, bool(flags & 0x01))


def _decode_id_only(cls):
    name = cls.__name__.upper()

    def decode_id_only(flags: int, body: memoryview):
        if len(body) != 2:
            raise ProtocolError(f"{name} remaining length {len(body)}, expected 2")
        packet_id, _ = _read_packet_id(body, 0)
        return cls(packet_id)
    return decode_id_only


def _read_subscription_qos(body: memoryview, pos: int) -> tuple[int, int]:
    if pos >= len(body):
        raise ProtocolError("truncated SUBSCRIBE: a topic filter without its QoS")
    qos = body[pos]
    if qos > 2:  # also catches the reserved upper bits
        raise ProtocolError(f"invalid requested QoS byte {qos:#04x}")
    return qos, pos + 1


def _decode_subscribe(flags: int, body: memoryview) -> Subscribe:
    packet_id, pos = _read_packet_id(body, 0)
    topics = []
    end = len(body)
    while pos < end:
        topic_filter, pos = _read_string(body, pos, "topic filter")
        problem = topic_filter_problem(topic_filter)
        if problem:
            raise ProtocolError(problem)
        qos, pos = _read_subscription_qos(body, pos)
        topics.append((topic_filter, qos))
    if not topics:
        raise ProtocolError("SUBSCRIBE without topic filters")
    return Subscribe(packet_id, tuple(topics))


def _decode_suback(flags: int, body: memoryview) -> Suback:
    packet_id, pos = _read_packet_id(body, 0)
    codes = bytes(body[pos:])
    if not codes:
        raise ProtocolError("SUBACK without return codes")
    if codes.translate(None, b"\x00\x01\x02\x80"):
        raise ProtocolError("invalid SUBACK return code")
    return Suback(packet_id, tuple(codes))


def _decode_unsubscribe(flags: int, body: memoryview) -> Unsubscribe:
    packet_id, pos = _read_packet_id(body, 0)
    topics = []
    end = len(body)
    while pos < end:
        topic_filter, pos = _read_string(body, pos, "topic filter")
        problem = topic_filter_problem(topic_filter)
        if problem:
            raise ProtocolError(problem)
        topics.append(topic_filter)
    if not topics:
        raise ProtocolError("UNSUBSCRIBE without topic filters")
    return Unsubscribe(packet_id, tuple(topics))


def _decode_empty(cls):
    name = cls.__name__.upper()
    instance = cls()

    def decode_empty(flags: int, body: memoryview):
        if len(body):
            raise ProtocolError(f"{name} remaining length {len(body)}, expected 0")
        return instance
    return decode_empty


_DECODERS = {
    1: _decode_connect,
    2: _decode_connack,
    3: _decode_publish,
    4: _decode_id_only(Puback),
    5: _decode_id_only(Pubrec),
    6: _decode_id_only(Pubrel),
    7: _decode_id_only(Pubcomp),
    8: _decode_subscribe,
    9: _decode_suback,
    10: _decode_unsubscribe,
    11: _decode_id_only(Unsuback),
    12: _decode_empty(Pingreq),
    13: _decode_empty(Pingresp),
    14: _decode_empty(Disconnect),
}


class PacketReader:
    """Turns a byte stream, split anywhere, into packets.

    Holds at most one partial packet, and never one larger than ``max_packet_size`` (the whole
    packet, fixed header included): that is refused as soon as its remaining length is readable.
    After a ProtocolError the stream cannot be resynchronised, so every later call raises it again.
    """

    __slots__ = ("max_packet_size", "_buf", "_pos", "_error")

    def __init__(self, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        if max_packet_size < 2:
            raise ValueError("max_packet_size must be at least 2")
        self.max_packet_size = max_packet_size
        self._buf = bytearray()
        self._pos = 0
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet decoded."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> list[Packet]:
        """Every packet completed by ``data``; raises ProtocolError on malformed input."""
        self.append(data)
        packets = []
        while (packet := self.next_packet()) is not None:
            packets.append(packet)
        return packets

    def append(self, data: bytes) -> None:
        """Buffer ``data`` without decoding it."""
        if self._error is not None:
            raise self._error
        self._buf += data

    def next_packet(self) -> Packet | None:
        """The next complete packet, or None until more bytes arrive; raises ProtocolError."""
        if self._error is not None:
            raise self._error
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            return self._compact()
        first = buf[pos]
        packet_type, flags = first >> 4, first & 0x0F
        try:
            # Fixed header: check the type and flags before anything else arrives.
            if packet_type == 0 or packet_type == 15:
                raise ProtocolError(f"reserved packet type {packet_type}")
            if packet_type != 3 and flags != _REQUIRED_FLAGS[packet_type]:
                raise ProtocolError(f"invalid flags {flags:#06b} for {_TYPE_NAME[packet_type]}")
            # Remaining length: at most 4 bytes.
            remaining = 0
            shift = 0
            index = pos + 1
            while True:
                if index >= len(buf):
                    return self._compact()
                byte = buf[index]
                remaining |= (byte & 0x7F) << shift
                index += 1
                if not byte & 0x80:
                    break
                shift += 7
                if shift == 28:
                    raise ProtocolError("remaining length longer than 4 bytes")
            start = index
            end = start + remaining
            if end - pos > self.max_packet_size:
                raise ProtocolError(
                    f"{_TYPE_NAME[packet_type]} of {end - pos} bytes exceeds the maximum of {self.max_packet_size}"
                )
            if end > len(buf):
                return self._compact()
            with memoryview(buf) as view:
                with view[start:end] as body:
                    packet = _DECODERS[packet_type](flags, body)
        except ProtocolError as exc:
            self._fail(exc)
            raise
        self._pos = end
        if end == len(buf):
            buf.clear()
            self._pos = 0
        return packet

    def _compact(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        return None

    def _fail(self, exc: ProtocolError) -> None:
        self._error = exc
        self._buf = bytearray()
        self._pos = 0
