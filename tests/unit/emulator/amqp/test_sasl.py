"""The SASL layer without sockets: IoT Hub's mechanisms, PLAIN checked by the hub, skipped SASL, bad bytes."""

import struct

import pytest
from proton import Data, Described, symbol, ulong

from emulator.amqp.sasl import AMQP_HEADER, SASL_HEADER, SaslError, SaslServer

OUTCOME_OK = b"\x00SD\xd0\x00\x00\x00\x06\x00\x00\x00\x01P\x00"


def frame(descriptor: int, fields: list) -> bytes:
    data = Data()
    data.put_object(Described(ulong(descriptor), fields))
    body = bytes(data.encode())
    return struct.pack(">IBBH", 8 + len(body), 2, 1, 0) + body


def decode_frames(data: bytes) -> list:
    frames = []
    while data:
        size = struct.unpack(">I", data[:4])[0]
        body = Data()
        body.decode(data[8:size])
        body.rewind()
        body.next()
        frames.append(body.get_object())
        data = data[size:]
    return frames


def checker(expected_password="good"):
    seen = []

    def check(username, password):
        seen.append((username, password))
        return None if password == expected_password else "bad token"
    return check, seen


def test_offers_iot_hubs_mechanisms():
    server = SaslServer(checker()[0])
    server.receive_data(SASL_HEADER)
    out = server.data_to_send()
    assert out.startswith(SASL_HEADER)
    [mechanisms] = decode_frames(out[8:])
    assert mechanisms.descriptor == 0x40
    assert list(mechanisms.value[0]) == ["MSSBCBS", "ANONYMOUS", "PLAIN"]


@pytest.mark.parametrize("mechanism", ["ANONYMOUS", "MSSBCBS"])
def test_anonymous_kinds_succeed_and_hand_over_the_rest(mechanism):
    server = SaslServer(checker()[0])
    server.receive_data(SASL_HEADER + frame(0x41, [symbol(mechanism)]) + AMQP_HEADER + b"more")
    assert server.done and server.identity.mechanism == mechanism
    assert server.leftover == AMQP_HEADER + b"more"
    assert server.data_to_send().endswith(OUTCOME_OK)


def test_plain_credentials_go_to_the_hub_check_byte_by_byte():
    check, seen = checker()
    server = SaslServer(check)
    data = SASL_HEADER + frame(0x41, [symbol("PLAIN"), b"\x00iothubowner@sas.root.hub\x00good", "hub"])
    for i in range(len(data)):  # TLS may hand us any split
        server.receive_data(data[i:i + 1])
    assert server.done and seen == [("iothubowner@sas.root.hub", "good")]
    assert server.identity.password == "good"


def test_refused_plain_gets_an_auth_outcome_and_fails():
    server = SaslServer(checker()[0])
    server.receive_data(SASL_HEADER + frame(0x41, [symbol("PLAIN"), b"\x00u\x00bad"]))
    assert server.failed and server.refusal == "bad token"
    [_, outcome] = decode_frames(server.data_to_send()[8:])
    assert outcome.descriptor == 0x44 and outcome.value[0] == 1


def test_unoffered_mechanism_fails():
    server = SaslServer(checker()[0])
    server.receive_data(SASL_HEADER + frame(0x41, [symbol("EXTERNAL")]))
    assert server.failed and "not offered" in server.refusal


def test_a_client_may_skip_sasl():
    server = SaslServer(checker()[0])
    server.receive_data(AMQP_HEADER[:3])
    assert not server.done
    server.receive_data(AMQP_HEADER[3:] + b"open...")
    assert server.done and server.identity.mechanism == "NONE" and server.leftover == AMQP_HEADER + b"open..."
    assert server.data_to_send() == b""


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n",
    b"AMQP\x02\x01\x00\x00",
    SASL_HEADER + b"\x00\x00\x00\x02\x02\x01\x00\x00",  # frame smaller than its header
    SASL_HEADER + b"\x7f\xff\xff\xff\x02\x01\x00\x00",  # absurdly large
    SASL_HEADER + frame(0x44, [b"\x00"]),  # an outcome from the client
    SASL_HEADER + frame(0x41, [symbol("PLAIN"), b"no separators"]),
    SASL_HEADER + struct.pack(">IBBH", 12, 2, 1, 0) + b"\xde\xad\xbe\xef",
])
def test_bad_bytes_raise_sasl_error(data):
    server = SaslServer(checker()[0])
    with pytest.raises(SaslError):
        server.receive_data(data)
