"""The Event Hubs-compatible endpoint's pieces without sockets: start filters, how a message is
stamped, the connection string, and the frame rewriting azure-eventhub's AMQP stack needs."""

from __future__ import annotations

import struct

import pytest
from proton import Message, symbol

from emulator.amqp.connection import Refused
from emulator.amqp.event_hubs import (event_hub_connection_string, event_hub_name,
                                      event_message, start_sequence_number)
from emulator.amqp.frames import EndedChannelFilter, FramePadder, pad_performative
from emulator.hub.telemetry import Partition, TelemetryMessage


@pytest.fixture
def partition() -> Partition:
    partition = Partition(0, capacity=10)
    for n, when in enumerate((10.0, 20.0, 30.0)):
        partition.append(TelemetryMessage("d", f"m{n}".encode(), enqueued_time=when))
    return partition


@pytest.mark.parametrize(("selector", "expected"), [
    (None, 0),
    ("amqp.annotation.x-opt-offset > '-1'", 0),
    ("amqp.annotation.x-opt-offset > '@latest'", 3),
    ("amqp.annotation.x-opt-sequence-number > '0'", 1),
    ("amqp.annotation.x-opt-sequence-number >= '1'", 1),
    ("amqp.annotation.x-opt-sequence-number > 2995", 2996),  # the docs sample's unquoted form
    ("amqp.annotation.x-opt-enqueued-time > '20000'", 2),
    ("amqp.annotation.x-opt-enqueued-time >= '20000'", 1),
    ("AMQP.ANNOTATION.X-OPT-SEQUENCE-NUMBER >= '2'", 2),
])
def test_start_filters(partition, selector, expected):
    assert start_sequence_number(partition, selector) == expected


def test_start_by_offset_uses_the_offsets_the_reader_was_given(partition):
    second = partition.messages()[1]
    assert start_sequence_number(partition, f"amqp.annotation.x-opt-offset > '{second.offset}'") == 2
    assert start_sequence_number(partition, f"amqp.annotation.x-opt-offset >= '{second.offset}'") == 1


@pytest.mark.parametrize("selector", ["amqp.annotation.x-opt-offset > 'soon'", "partition = 1",
                                      "amqp.annotation.x-opt-sequence-number < '3'"])
def test_a_filter_it_cannot_use_is_refused_with_invalid_field(partition, selector):
    with pytest.raises(Refused) as refused:
        start_sequence_number(partition, selector)
    assert refused.value.condition == "amqp:invalid-field"


def test_a_message_is_stamped_as_iothub_stamps_it():
    event = Partition(2, 10).append(TelemetryMessage(
        "dev-1", b'{"t":1}', {"alert": "true"},
        {"$.mid": "m-1", "$.cid": "c-1", "$.ct": "application/json", "$.ce": "utf-8"},
        enqueued_time=1_700_000_000.5, generation_id="638000"))
    decoded = Message()
    decoded.decode(event_message(event).encode())
    assert decoded.body == b'{"t":1}'
    assert (decoded.id, decoded.correlation_id) == ("m-1", "c-1")
    assert (decoded.content_type, decoded.content_encoding) == ("application/json", "utf-8")
    assert decoded.properties == {"alert": "true"}
    annotations = decoded.annotations
    assert all(isinstance(key, symbol) for key in annotations)
    assert annotations["iothub-connection-device-id"] == "dev-1"
    assert annotations["iothub-connection-auth-generation-id"] == "638000"
    assert annotations["iothub-message-source"] == "Telemetry"
    assert '"type":"sas"' in annotations["iothub-connection-auth-method"]
    assert annotations["iothub-enqueuedtime"] == annotations["x-opt-enqueued-time"] == 1_700_000_000_500
    assert (annotations["x-opt-sequence-number"], annotations["x-opt-offset"]) == (0, "0")
    assert "dt-dataschema" not in annotations and "dt-subject" not in annotations


def test_plug_and_play_model_component_and_creation_time_are_stamped_when_present():
    event = Partition(0, 10).append(TelemetryMessage(
        "pnp", b"{}", system_properties={"$.sub": "thermostat1", "$.ctime": "2024-05-01T12:00:00Z"},
        model_id="dtmi:com:example:TemperatureController;2"))
    annotations = event_message(event).annotations
    assert annotations["dt-dataschema"] == "dtmi:com:example:TemperatureController;2"
    assert annotations["dt-subject"] == "thermostat1"
    assert annotations["iothub-creation-time-utc"] == "2024-05-01T12:00:00Z"


def test_connection_string_and_entity_name():
    assert event_hub_name("myhub.azure-devices.net") == "myhub" and event_hub_name("127.0.0.5") == "127.0.0.5"
    assert event_hub_connection_string("localhost", 5671, "service", "K=") == \
        "Endpoint=sb://localhost/;SharedAccessKeyName=service;SharedAccessKey=K=;EntityPath=localhost"
    assert event_hub_connection_string("localhost", 15671, "service", "K=").startswith(
        "Endpoint=sb://localhost:15671/;")


def frame(body: bytes, channel: int = 0) -> bytes:
    return struct.pack(">IBBH", 8 + len(body), 2, 0, channel) + body


def performative(code: int, fields: bytes, count: int) -> bytes:
    return bytes((0x00, 0x53, code, 0xC0, len(fields) + 1, count)) + fields


def test_padding_fills_a_short_performative_with_nulls_and_keeps_the_payload():
    detach = performative(0x16, b"\x52\x01", 1)  # handle 1 only: closed and error omitted
    padded = pad_performative(detach)
    assert padded == bytes((0x00, 0x53, 0x16, 0xC0, 5, 3)) + b"\x52\x01\x40\x40"
    transfer = performative(0x14, b"\x43", 1) + b"PAYLOAD"
    assert pad_performative(transfer).endswith(b"\x40" * 10 + b"PAYLOAD")
    close_list0 = bytes((0x00, 0x53, 0x18, 0x45))
    assert pad_performative(close_list0) == bytes((0x00, 0x53, 0x18, 0xC0, 2, 1, 0x40))
    assert pad_performative(b"not a performative") == b"not a performative"


def test_the_padder_waits_for_a_split_frame_and_rewrites_sizes():
    padder = FramePadder()
    whole = b"AMQP\x00\x01\x00\x00" + frame(performative(0x16, b"\x52\x01", 1)) + frame(b"")
    out = padder.feed(whole[:11]) + padder.feed(whole[11:])
    assert out[:8] == b"AMQP\x00\x01\x00\x00"
    size = struct.unpack(">I", out[8:12])[0]
    assert size == 8 + 10 and out[8 + size:] == frame(b"")  # the empty (heartbeat) frame is untouched


def test_frames_after_a_clients_end_on_that_channel_are_dropped_until_it_begins_again():
    begin, end = performative(0x11, b"\x40", 1), performative(0x17, b"", 0)
    detach = performative(0x16, b"\x52\x01", 1)
    incoming = EndedChannelFilter()
    assert incoming.feed(frame(begin, 1) + frame(end, 1)) == frame(begin, 1) + frame(end, 1)
    assert incoming.feed(frame(detach, 1)) == b""
    assert incoming.feed(frame(detach, 2)) == frame(detach, 2)
    assert incoming.feed(frame(begin, 1) + frame(detach, 1)) == frame(begin, 1) + frame(detach, 1)


def test_the_connections_close_is_kept_after_the_client_ended_the_session_on_its_channel():
    begin, end, close = performative(0x11, b"\x40", 1), performative(0x17, b"", 0), performative(0x18, b"", 0)
    incoming = EndedChannelFilter()
    incoming.feed(frame(begin, 0) + frame(end, 0))
    assert incoming.feed(frame(close, 0)) == frame(close, 0)


def test_a_huge_declared_frame_size_is_not_buffered():
    assert EndedChannelFilter().feed(b"\xff\xff\xff\xff\x02\x00\x00\x00") == b"\xff\xff\xff\xff\x02\x00\x00\x00"


class _Link:
    def __init__(self, credit: int):
        self.credit = credit
        self.remote_snd_settle_mode = 1  # settled
        self.sent: list[Message] = []


class _Connection:
    def __init__(self):
        self.paused = False

    def send(self, link, message, *, settled=False):
        link.sent.append(message)
        link.credit -= 1

    def wake_soon(self):
        pass


def test_a_reader_sends_within_its_credit_and_nothing_while_the_socket_is_full():
    from emulator.amqp.event_hubs import PartitionReader
    partition = Partition(0, capacity=100)
    connection, link = _Connection(), _Link(credit=3)
    reader = PartitionReader(connection, link, partition, position=0)
    for n in range(5):
        partition.append(TelemetryMessage("d", f"m{n}".encode()))
        partition.notify()
    assert [m.body for m in link.sent] == [b"m0", b"m1", b"m2"] and reader.position == 3
    link.credit = 10
    connection.paused = True
    reader.on_credit()
    partition.append(TelemetryMessage("d", b"m5"))
    partition.notify()
    assert len(link.sent) == 3  # the write buffer is full: it waits
    connection.paused = False
    reader.on_credit()
    assert [m.body for m in link.sent][3:] == [b"m3", b"m4", b"m5"]
    reader.on_closed()
    partition.append(TelemetryMessage("d", b"after"))
    partition.notify()
    assert len(link.sent) == 6
