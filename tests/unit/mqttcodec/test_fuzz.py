"""Property tests: any packet round-trips; any bytes, split anywhere, give packets or a ProtocolError
from the codec and never an exception from the session."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
)
from emulator.mqtt.session import ConnectionLost, ConnectRequested, ServerConnection, SessionState

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies -------------------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20)
topic_names = st.text(st.characters(blacklist_characters="\x00+#", blacklist_categories=("Cs",)),
                      min_size=1, max_size=30)
_level = st.one_of(st.just("+"), st.text(st.characters(blacklist_characters="\x00+#/", blacklist_categories=("Cs",)),
                                         max_size=8))
topic_filters = st.builds(
    lambda levels, hash_: "/".join(levels + (["#"] if hash_ else [])),
    st.lists(_level, min_size=0, max_size=4), st.booleans(),
).filter(bool)
packet_ids = st.integers(1, 65535)
qos = st.integers(0, 2)
payloads = st.binary(max_size=300)


@st.composite
def publishes(draw):
    q = draw(qos)
    return Publish(draw(topic_names), draw(payloads), q, draw(packet_ids) if q else None,
                   draw(st.booleans()) if q else False, draw(st.booleans()))


@st.composite
def connects(draw):
    username = draw(st.none() | _text)
    return Connect(
        client_id=draw(_text),
        username=username,
        password=None if username is None else draw(st.none() | st.binary(max_size=40)),
        keepalive=draw(st.integers(0, 65535)),
        clean_session=draw(st.booleans()),
        will=draw(st.none() | st.builds(Will, topic_names, st.binary(max_size=20), qos, st.booleans())),
    )


connacks = st.one_of(st.builds(Connack, st.booleans(), st.just(0)), st.builds(Connack, st.just(False), st.integers(1, 5)))
packets = st.one_of(
    connects(),
    connacks,
    publishes(),
    st.builds(Puback, packet_ids), st.builds(Pubrec, packet_ids), st.builds(Pubrel, packet_ids),
    st.builds(Pubcomp, packet_ids), st.builds(Unsuback, packet_ids),
    st.builds(Subscribe, packet_ids, st.lists(st.tuples(topic_filters, qos), min_size=1, max_size=4).map(tuple)),
    st.builds(Suback, packet_ids, st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1, max_size=4).map(tuple)),
    st.builds(Unsubscribe, packet_ids, st.lists(topic_filters, min_size=1, max_size=4).map(tuple)),
    st.just(Pingreq()), st.just(Pingresp()), st.just(Disconnect()),
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)])]


@st.composite
def mutated_streams(draw):
    """Valid packets, then truncated, with bytes flipped, inserted or deleted."""
    data = bytearray(b"".join(encode(p) for p in draw(st.lists(packets, min_size=1, max_size=6))))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and data:
            del data[at]
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


streams = st.one_of(st.binary(max_size=400), mutated_streams())
cuts = st.lists(st.integers(0, 10_000), max_size=8)


# --- codec -----------------------------------------------------------------------------------------

@SETTINGS
@given(packets)
def test_any_valid_packet_round_trips(packet):
    assert PacketReader().feed(encode(packet)) == [packet]


@SETTINGS
@given(st.lists(packets, max_size=8), cuts)
def test_valid_streams_decode_the_same_however_they_are_split(packet_list, cut_points):
    data = b"".join(encode(p) for p in packet_list)
    reader = PacketReader()
    out = []
    for chunk in chunked(data, cut_points):
        out += reader.feed(chunk)
    assert out == packet_list and reader.buffered == 0


@SETTINGS
@given(streams, cuts, st.integers(2, 600))
def test_codec_raises_only_protocol_error(data, cut_points, max_packet_size):
    reader = PacketReader(max_packet_size=max_packet_size)
    try:
        for chunk in chunked(data, cut_points):
            for packet in reader.feed(chunk):
                encode(packet)  # whatever decodes is a valid packet
    except ProtocolError:
        pass
    # Bounded: one partial packet whose length passed the check, or an unfinished fixed header.
    assert reader.buffered <= max(max_packet_size, 4)


# --- session ----------------------------------------------------------------------------------------

@SETTINGS
@given(streams, cuts, st.booleans(), st.booleans())
def test_session_never_raises(data, cut_points, prefix_connect, accept):
    """Any input, as the first bytes of a connection or after a successful CONNECT."""
    server = ServerConnection(now=lambda: 0.0, max_packet_size=512)
    session = SessionState("d")
    if prefix_connect:
        server.receive_data(encode(Connect("d", clean_session=False)))
        server.accept(session, False)
        server.publish("t", b"out")
    events = []
    for chunk in chunked(data, cut_points):
        new = server.receive_data(chunk)
        events += new
        if any(isinstance(e, ConnectRequested) for e in new):
            if accept:
                server.accept(session, True)
                events += server.receive_data(b"")
            else:
                server.refuse(5)
        server.data_to_send()
    events += server.check_keepalive()
    lost = [e for e in events if isinstance(e, ConnectionLost)]
    assert len(lost) <= 1
    assert all("internal error" not in e.reason for e in lost), lost
    if lost:
        assert events[-1] is lost[0] and server.state == "closed"
    if server.state == "closed":
        assert server.receive_data(b"\xc0\x00") == [] and server.data_to_send() == b""
