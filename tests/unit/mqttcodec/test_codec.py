"""The MQTT 3.1.1 codec: round trips, byte vectors from the spec and from paho, and every refusal."""

import pytest

from mqttcodec import (
    Connack,
    Connect,
    Disconnect,
    PacketReader,
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
    encode,
    encode_parts,
)
from mqttcodec.encoder import _remaining_length

# What paho-mqtt 1.6.1 (azure-iot-device's transport) sends: client id myDeviceId, clean_session=0,
# keepalive 60, username and password. Captured on loopback.
PAHO_CONNECT = (
    b"\x10u\x00\x04MQTT\x04\xc0\x00<\x00\nmyDeviceId"
    b"\x006h.azure-devices.net/myDeviceId/?api-version=2019-10-01"
    b"\x00%SharedAccessSignature sr=x&sig=y&se=1"
)
PAHO_CONNECT_PACKET = Connect(
    client_id="myDeviceId",
    username="h.azure-devices.net/myDeviceId/?api-version=2019-10-01",
    password=b"SharedAccessSignature sr=x&sig=y&se=1",
    keepalive=60,
    clean_session=False,
)

EVERY_PACKET = [
    pytest.param(PAHO_CONNECT_PACKET, id="connect"),
    pytest.param(Connect(client_id="", keepalive=0), id="connect-minimal"),
    pytest.param(Connect("dev", will=Will("last/will", b"\x00bye", qos=1, retain=True), username="u"), id="connect-will"),
    pytest.param(Connect("dev", username="u", password=b""), id="connect-empty-password"),
    pytest.param(Connect("dev", protocol_name="MQIsdp", protocol_level=3), id="connect-mqisdp"),
    pytest.param(Connack(session_present=True, return_code=0), id="connack"),
    pytest.param(Connack(session_present=False, return_code=5), id="connack-refused"),
    pytest.param(Publish("devices/d/messages/events/", b"hello", qos=1, packet_id=7), id="publish-qos1"),
    pytest.param(Publish("t", b"", qos=0), id="publish-qos0-empty"),
    pytest.param(Publish("t/é", b"x" * 70_000, qos=2, packet_id=65535, dup=True, retain=True), id="publish-qos2-big"),
    pytest.param(Puback(1), id="puback"),
    pytest.param(Pubrec(2), id="pubrec"),
    pytest.param(Pubrel(3), id="pubrel"),
    pytest.param(Pubcomp(4), id="pubcomp"),
    pytest.param(Subscribe(5, (("$iothub/methods/POST/#", 1), ("a/+/c", 0), ("#", 2))), id="subscribe"),
    pytest.param(Suback(5, (1, 0, 2, 0x80)), id="suback"),
    pytest.param(Unsubscribe(6, ("a/b", "+")), id="unsubscribe"),
    pytest.param(Unsuback(6), id="unsuback"),
    pytest.param(Pingreq(), id="pingreq"),
    pytest.param(Pingresp(), id="pingresp"),
    pytest.param(Disconnect(), id="disconnect"),
]


@pytest.mark.parametrize("packet", EVERY_PACKET)
def test_every_packet_type_round_trips(packet):
    data = encode(packet)
    assert PacketReader(max_packet_size=1 << 20).feed(data) == [packet]
    assert b"".join(encode_parts(packet)) == data


def test_all_fourteen_packet_types_are_covered():
    assert len({type(p.values[0]) for p in EVERY_PACKET}) == 14


@pytest.mark.parametrize("packet", [p for p in EVERY_PACKET if len(encode(p.values[0])) < 2000])  # big: below
def test_any_split_of_the_stream_decodes_the_same(packet):
    data = encode(packet) + encode(Pingreq())
    for cut in range(len(data) + 1):
        reader = PacketReader()
        assert reader.feed(data[:cut]) + reader.feed(data[cut:]) == [packet, Pingreq()]
    reader = PacketReader()
    out = []
    for i in range(len(data)):  # one byte at a time
        out += reader.feed(data[i:i + 1])
    assert out == [packet, Pingreq()]
    assert reader.buffered == 0


def test_large_publish_in_chunks():
    packet = Publish("t", bytes(range(256)) * 1000, qos=1, packet_id=9)
    data = encode(packet)
    reader = PacketReader()
    out = []
    for i in range(0, len(data), 4096):
        out += reader.feed(data[i:i + 4096])
    assert out == [packet]
    assert type(out[0].payload) is bytes


def test_many_packets_in_one_feed():
    packets = [Publish("t", str(i).encode(), qos=1, packet_id=i + 1) for i in range(1000)]
    assert PacketReader().feed(b"".join(encode(p) for p in packets)) == packets


# --- byte vectors -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "packet, wire",
    [
        (PAHO_CONNECT_PACKET, PAHO_CONNECT),
        (Connect("", keepalive=60), b"\x10\x0c\x00\x04MQTT\x04\x02\x00<\x00\x00"),  # paho, empty id
        (Pingreq(), b"\xc0\x00"),
        (Pingresp(), b"\xd0\x00"),
        (Disconnect(), b"\xe0\x00"),
        (Connack(False, 0), b"\x20\x02\x00\x00"),
        (Connack(True, 0), b"\x20\x02\x01\x00"),
        (Puback(10), b"\x40\x02\x00\x0a"),
        (Pubrel(10), b"\x62\x02\x00\x0a"),
        # Spec 3.3.2.3: topic "a/b", packet id 10.
        (Publish("a/b", b"", qos=1, packet_id=10), b"\x32\x07\x00\x03a/b\x00\x0a"),
        (Publish("a/b", b"hi", qos=0, retain=True), b"\x31\x07\x00\x03a/bhi"),
        # Spec 3.8.3.1: packet id 10, "a/b" QoS 1, "c/d" QoS 2.
        (Subscribe(10, (("a/b", 1), ("c/d", 2))), b"\x82\x0e\x00\x0a\x00\x03a/b\x01\x00\x03c/d\x02"),
        # Spec 3.9.3.1: return codes 0, 1, 2 and failure.
        (Suback(10, (0, 1, 2, 0x80)), b"\x90\x06\x00\x0a\x00\x01\x02\x80"),
        (Unsubscribe(10, ("a/b", "c/d")), b"\xa2\x0c\x00\x0a\x00\x03a/b\x00\x03c/d"),
        (Unsuback(10), b"\xb0\x02\x00\x0a"),
    ],
)
def test_known_byte_vectors(packet, wire):
    assert encode(packet) == wire
    assert PacketReader().feed(wire) == [packet]


@pytest.mark.parametrize(
    "length, wire",
    [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"), (16_384, b"\x80\x80\x01"),
     (2_097_151, b"\xff\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f")],
)
def test_remaining_length_vectors_from_the_spec(length, wire):
    assert _remaining_length(length) == wire


def test_non_minimal_remaining_length_is_accepted():
    assert PacketReader().feed(b"\xc0\x80\x00") == [Pingreq()]


# --- protocol versions ---------------------------------------------------------------------------------

def test_other_protocol_levels_decode_header_only():
    # An MQTT 5 CONNECT: properties follow the keepalive, which 3.1.1 cannot parse.
    mqtt5 = _body(0x10, b"\x00\x04MQTT\x05\x02\x00\x3c\x03\x21\x00\x14\x00\x01x")
    assert PacketReader().feed(mqtt5) == [
        Connect(client_id="", keepalive=60, clean_session=True, protocol_name="MQTT", protocol_level=5)
    ]


# --- decoding refusals --------------------------------------------------------------------------------

def _body(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _remaining_length(len(body)) + body


def _connect(flags: int, payload: bytes, name: bytes = b"\x00\x04MQTT", level: int = 4) -> bytes:
    return _body(0x10, name + bytes((level, flags)) + b"\x00\x3c" + payload)


BAD_INPUT = {
    "reserved type 0": b"\x00\x00",
    "reserved type 15": b"\xf0\x00",
    "connect flags in fixed header": b"\x11\x00",
    "pubrel without its 0010 flags": b"\x60\x02\x00\x01",
    "subscribe without its 0010 flags": _body(0x80, b"\x00\x01\x00\x01a\x00"),
    "unsubscribe without its 0010 flags": _body(0xA0, b"\x00\x01\x00\x01a"),
    "pingreq with flags": b"\xc1\x00",
    "remaining length of 5 bytes": b"\x30\xff\xff\xff\xff\x01",
    "publish qos 3": _body(0x36, b"\x00\x01t\x00\x01"),
    "publish dup on qos 0": _body(0x38, b"\x00\x01t"),
    "publish packet id 0": _body(0x32, b"\x00\x01t\x00\x00"),
    "publish qos1 missing packet id": _body(0x32, b"\x00\x01t\x00"),
    "publish topic wildcard +": _body(0x30, b"\x00\x03a/+"),
    "publish topic wildcard #": _body(0x30, b"\x00\x01#"),
    "publish empty topic": _body(0x30, b"\x00\x00payload"),
    "publish topic with U+0000": _body(0x30, b"\x00\x03a\x00b"),
    "publish topic invalid utf-8": _body(0x30, b"\x00\x02\xc3\x28"),
    "publish topic encoded surrogate": _body(0x30, b"\x00\x03\xed\xa0\x80"),
    "publish topic longer than packet": _body(0x30, b"\x00\x09abc"),
    "publish truncated topic length": _body(0x30, b"\x00"),
    "connect unknown protocol name": _connect(0x02, b"\x00\x01c", name=b"\x00\x04MQTX"),
    "connect truncated header": _body(0x10, b"\x00\x04MQTT\x04\x02"),
    "connect reserved flag": _connect(0x03, b"\x00\x01c"),
    "connect will qos 3": _connect(0x1E, b"\x00\x01c\x00\x01w\x00\x00"),
    "connect will qos without will": _connect(0x0A, b"\x00\x01c"),
    "connect will retain without will": _connect(0x22, b"\x00\x01c"),
    "connect password without username": _connect(0x42, b"\x00\x01c\x00\x01p"),
    "connect missing username": _connect(0x82, b"\x00\x01c"),
    "connect missing will": _connect(0x06, b"\x00\x01c"),
    "connect will topic wildcard": _connect(0x06, b"\x00\x01c\x00\x01#\x00\x00"),
    "connect trailing bytes": _connect(0x02, b"\x00\x01cX"),
    "connect client id with U+0000": _connect(0x02, b"\x00\x01\x00"),
    "connect username invalid utf-8": _connect(0x82, b"\x00\x01c\x00\x01\xff"),
    "connack wrong length": b"\x20\x03\x00\x00\x00",
    "connack reserved flag": b"\x20\x02\x02\x00",
    "connack reserved return code": b"\x20\x02\x00\x06",
    "connack session present on refusal": b"\x20\x02\x01\x05",
    "puback packet id 0": b"\x40\x02\x00\x00",
    "puback wrong length": b"\x40\x03\x00\x01\x00",
    "unsuback short": b"\xb0\x01\x00",
    "pingreq with a body": b"\xc0\x01\x00",
    "disconnect with a body": b"\xe0\x01\x00",
    "subscribe empty": _body(0x82, b"\x00\x01"),
    "subscribe packet id 0": _body(0x82, b"\x00\x00\x00\x01a\x01"),
    "subscribe qos 3": _body(0x82, b"\x00\x01\x00\x01a\x03"),
    "subscribe reserved qos bits": _body(0x82, b"\x00\x01\x00\x01a\x41"),
    "subscribe missing qos": _body(0x82, b"\x00\x01\x00\x01a"),
    "subscribe empty filter": _body(0x82, b"\x00\x01\x00\x00\x01"),
    "subscribe # not last": _body(0x82, b"\x00\x01\x00\x03#/a\x01"),
    "subscribe # inside a level": _body(0x82, b"\x00\x01\x00\x03a/b#\x01"),
    "subscribe + inside a level": _body(0x82, b"\x00\x01\x00\x03a+b\x01"),
    "suback empty": _body(0x90, b"\x00\x01"),
    "suback bad return code": _body(0x90, b"\x00\x01\x03"),
    "unsubscribe empty": _body(0xA2, b"\x00\x01"),
    "unsubscribe bad filter": _body(0xA2, b"\x00\x01\x00\x02a#"),
}


@pytest.mark.parametrize("data", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_malformed_input_is_a_protocol_error(data):
    with pytest.raises(ProtocolError):
        PacketReader().feed(data)


@pytest.mark.parametrize("data", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_malformed_input_byte_by_byte_is_a_protocol_error(data):
    reader = PacketReader()
    with pytest.raises(ProtocolError):
        for i in range(len(data)):
            reader.feed(data[i:i + 1])


def test_reader_stays_broken_after_an_error():
    reader = PacketReader()
    with pytest.raises(ProtocolError):
        reader.feed(b"\x00\x00")
    with pytest.raises(ProtocolError):
        reader.feed(b"\xc0\x00")


def test_oversize_packet_refused_as_soon_as_its_length_is_known():
    reader = PacketReader(max_packet_size=1000)
    head = encode(Publish("t", b"x" * 1000))[:4]  # first byte + 2 length bytes + 1 body byte
    with pytest.raises(ProtocolError, match="exceeds"):
        reader.feed(head)
    # ...and the limit counts the whole packet, fixed header included.
    fits = encode(Publish("t", b"x" * (1000 - 6)))
    assert len(fits) == 1000
    assert PacketReader(max_packet_size=1000).feed(fits)
    with pytest.raises(ProtocolError):
        PacketReader(max_packet_size=999).feed(fits)


def test_remaining_length_overflow_refused_before_the_body():
    with pytest.raises(ProtocolError, match="4 bytes"):
        PacketReader().feed(b"\x30\xff\xff\xff\xff")


def test_type_and_flags_checked_on_the_first_byte():
    with pytest.raises(ProtocolError):
        PacketReader().feed(b"\x60")  # PUBREL must carry flags 0010


# --- encoding refusals --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "packet",
    [
        Publish("t", qos=3, packet_id=1),
        Publish("t", qos=1),                        # QoS 1 without packet id
        Publish("t", qos=1, packet_id=0),
        Publish("t", qos=1, packet_id=65536),
        Publish("t", qos=0, packet_id=1),
        Publish("t", qos=0, dup=True),
        Publish("a/#"),
        Publish(""),
        Publish("a\x00b"),
        Publish("x" * 65536),
        Connect("c", password=b"p"),                # password needs a username
        Connect("c", keepalive=70000),
        Connect("c", will=Will("t", b"", qos=3)),
        Connect("c", will=Will("+", b"")),
        Connect("c", username="u", password=b"x" * 65536),
        Connect("c", protocol_level=256),
        Connack(True, 1),
        Connack(False, 6),
        Puback(0),
        Subscribe(1, ()),
        Subscribe(1, (("a", 3),)),
        Subscribe(1, (("a#", 0),)),
        Suback(1, ()),
        Suback(1, (3,)),
        Unsubscribe(1, ()),
        Unsubscribe(0, ("a",)),
        Unsubscribe(1, ("a#",)),
    ],
    ids=repr,
)
def test_encoding_an_invalid_packet_is_a_value_error(packet):
    with pytest.raises(ValueError):
        encode(packet)


def test_encoding_something_else_is_a_type_error():
    with pytest.raises(TypeError):
        encode("PINGREQ")


def test_publish_payload_is_not_copied_by_encode_parts():
    payload = b"p" * 100_000
    parts = encode_parts(Publish("t", payload, qos=1, packet_id=1))
    assert parts[-1] is payload
