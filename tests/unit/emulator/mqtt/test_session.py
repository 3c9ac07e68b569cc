"""The sans-I/O server session, driven by a raw client built on the codec: two in-memory ends."""

import pytest

from mqttcodec import (
    Connack,
    Connect,
    Disconnect,
    PacketReader,
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
    encode,
)
from emulator.mqtt.session import (
    ConnectionLost,
    ConnectRequested,
    Delivered,
    MessageReceived,
    ServerConnection,
    SessionState,
    Subscribed,
    Unsubscribed,
    keepalive_timeout,
)

DEVICE_CONNECT = Connect("myDeviceId", username="hub/myDeviceId/?api-version=2019-10-01",
                         password=b"SharedAccessSignature sr=..", keepalive=60, clean_session=False)


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Pair:
    """A ServerConnection and the client end of its 'socket'."""

    def __init__(self, clock: Clock | None = None, **kwargs) -> None:
        self.clock = clock or Clock()
        self.server = ServerConnection(now=self.clock, **kwargs)
        self._client_reader = PacketReader(max_packet_size=1 << 24)

    def send(self, *packets):
        return self.server.receive_data(b"".join(encode(p) for p in packets))

    def received(self):
        return self._client_reader.feed(self.server.data_to_send())


def connected(session: SessionState | None = None, present: bool = False, connect: Connect = DEVICE_CONNECT,
              **kwargs) -> tuple[Pair, SessionState]:
    pair = Pair(**kwargs)
    assert pair.send(connect) == [ConnectRequested(connect)]
    session = session if session is not None else SessionState(connect.client_id)
    pair.server.accept(session, present)
    assert pair.received()[0] == Connack(present and not connect.clean_session, 0)
    return pair, session


def test_full_lifecycle():
    pair = Pair()
    assert pair.server.state == "awaiting_connect"
    assert pair.send(DEVICE_CONNECT) == [ConnectRequested(DEVICE_CONNECT)]
    assert pair.server.state == "awaiting_connect"  # until the application decides
    assert pair.received() == []

    session = SessionState("myDeviceId")
    pair.server.accept(session, session_present=False)
    assert pair.server.state == "connected"
    assert pair.server.session is session and pair.server.connect == DEVICE_CONNECT
    assert pair.received() == [Connack(False, 0)]

    assert pair.send(Subscribe(1, (("$iothub/methods/POST/#", 1), ("$iothub/twin/res/#", 2)))) == [
        Subscribed((("$iothub/methods/POST/#", 1), ("$iothub/twin/res/#", 1)))
    ]
    assert pair.received() == [Suback(1, (1, 1))]
    assert session.subscriptions == {"$iothub/methods/POST/#": 1, "$iothub/twin/res/#": 1}

    # device -> hub, QoS 1: acked by the session itself
    get = Publish("$iothub/twin/GET/?$rid=1", b" ", qos=1, packet_id=2)
    assert pair.send(get) == [MessageReceived(get.topic, b" ", 1, 2)]
    assert pair.received() == [Puback(2)]
    # device -> hub, QoS 0: no ack
    assert pair.send(Publish("devices/myDeviceId/messages/events/", b"t")) == [
        MessageReceived("devices/myDeviceId/messages/events/", b"t", 0, None)
    ]
    assert pair.received() == []

    # hub -> device, QoS 1 then QoS 0
    assert pair.server.publish("$iothub/twin/res/200/?$rid=1", b"{}") == 1
    assert pair.server.publish("$iothub/methods/POST/reboot/?$rid=9", b"", qos=0) is None
    assert pair.received() == [Publish("$iothub/twin/res/200/?$rid=1", b"{}", 1, 1),
                               Publish("$iothub/methods/POST/reboot/?$rid=9", b"")]
    assert set(session.inflight) == {1}
    assert pair.send(Puback(1)) == [Delivered(1)]
    assert session.inflight == {}
    assert pair.send(Puback(1)) == []  # acked twice: ignored

    assert pair.send(Pingreq()) == []
    assert pair.received() == [Pingresp()]

    assert pair.send(Unsubscribe(3, ("$iothub/twin/res/#",))) == [Unsubscribed(("$iothub/twin/res/#",))]
    assert pair.received() == [Unsuback(3)]
    assert session.subscriptions == {"$iothub/methods/POST/#": 1}

    assert pair.send(Disconnect(), Pingreq()) == [ConnectionLost("client disconnected", True)]
    assert pair.server.state == "closed"
    assert pair.received() == []
    assert pair.send(Pingreq()) == []
    assert pair.server.receive_data(b"\xff\xff garbage") == []
    assert pair.server.keepalive_deadline() is None and pair.server.check_keepalive() == []


@pytest.mark.parametrize("return_code", [1, 2, 3, 4, 5])
def test_refuse_sends_connack_and_closes(return_code):
    pair = Pair()
    pair.send(DEVICE_CONNECT)
    pair.server.refuse(return_code)
    assert pair.server.state == "closed"
    assert pair.received() == [Connack(False, return_code)]
    assert pair.send(Pingreq()) == []
    assert pair.received() == []


def test_refuse_needs_a_refusal_code():
    pair = Pair()
    pair.send(DEVICE_CONNECT)
    for bad in (0, 6):
        with pytest.raises(ValueError):
            pair.server.refuse(bad)


def test_decisions_out_of_turn_are_errors():
    pair = Pair()
    with pytest.raises(RuntimeError):
        pair.server.accept(SessionState("x"), False)
    with pytest.raises(RuntimeError):
        pair.server.refuse(5)
    with pytest.raises(RuntimeError):
        pair.server.publish("t", b"")
    pair.send(DEVICE_CONNECT)
    with pytest.raises(RuntimeError):
        pair.server.publish("t", b"")
    pair.server.accept(SessionState("myDeviceId"), False)
    with pytest.raises(RuntimeError):
        pair.server.accept(SessionState("myDeviceId"), False)
    with pytest.raises(ValueError):
        pair.server.publish("t", b"", qos=2)
    with pytest.raises(ValueError):
        pair.server.publish("bad/#", b"")
    assert pair.server.session.inflight == {}


def test_decisions_after_the_transport_died_are_no_ops():
    pair = Pair()
    pair.send(DEVICE_CONNECT)
    pair.server.connection_lost()
    pair.server.accept(SessionState("myDeviceId"), False)
    pair.server.refuse(5)
    pair.server.close()
    assert pair.server.publish("t", b"x") is None
    assert pair.server.state == "closed"
    assert pair.received() == []


def test_connection_lost_discards_output_but_close_keeps_it():
    pair, _ = connected()
    pair.server.publish("t", b"x")
    pair.server.connection_lost()
    assert pair.server.data_to_send() == b""

    pair, _ = connected()
    pair.send(Pingreq())
    pair.server.close()
    assert pair.server.state == "closed"
    assert pair.received() == [Pingresp()]
    assert pair.server.publish("t", b"x") is None
    assert pair.received() == []


# --- packets pipelined behind CONNECT ------------------------------------------------------------------

def test_packets_behind_connect_wait_for_accept():
    pair = Pair()
    sub = Subscribe(1, (("a/#", 1),))
    pub = Publish("$iothub/twin/GET/?$rid=1", b" ", qos=1, packet_id=2)
    assert pair.send(DEVICE_CONNECT, sub, pub) == [ConnectRequested(DEVICE_CONNECT)]
    assert pair.send(Pingreq()) == []  # still held
    assert pair.received() == []
    assert not pair.server.accepted_with_pending_input

    pair.server.accept(SessionState("myDeviceId"), False)
    assert pair.server.accepted_with_pending_input
    assert pair.server.receive_data(b"") == [Subscribed((("a/#", 1),)),
                                             MessageReceived(pub.topic, b" ", 1, 2)]
    assert not pair.server.accepted_with_pending_input
    assert pair.received() == [Connack(False, 0), Suback(1, (1,)), Puback(2), Pingresp()]


def test_pending_input_flag_clears_even_on_a_partial_packet():
    pair = Pair()
    half = encode(Publish("t", b"x" * 50, qos=1, packet_id=1))[:20]
    pair.server.receive_data(encode(DEVICE_CONNECT) + half)
    pair.server.accept(SessionState("myDeviceId"), False)
    assert pair.server.accepted_with_pending_input
    assert pair.server.receive_data(b"") == []
    assert not pair.server.accepted_with_pending_input  # a drain loop ends here
    rest = encode(Publish("t", b"x" * 50, qos=1, packet_id=1))[20:]
    assert pair.server.receive_data(rest) == [MessageReceived("t", b"x" * 50, 1, 1)]


def test_nothing_pending_after_a_plain_connect():
    pair, _ = connected()
    assert not pair.server.accepted_with_pending_input


def test_packets_behind_a_refused_connect_are_dropped():
    pair = Pair()
    pair.send(DEVICE_CONNECT, Publish("t", b"x", qos=1, packet_id=1))
    pair.server.refuse(4)
    assert pair.server.receive_data(b"") == []
    assert pair.received() == [Connack(False, 4)]


def test_too_much_data_before_connack_closes():
    pair = Pair(max_packet_size=1000)
    pair.send(DEVICE_CONNECT)
    events = pair.server.receive_data(b"\x00" * 2001)
    assert events == [ConnectionLost("protocol violation: too much data before CONNACK", False)]
    pair.server.accept(SessionState("myDeviceId"), False)  # the app was slow: harmless
    assert pair.received() == []


# --- inbound QoS 1: every PUBLISH is processed ---------------------------------------------------

def test_a_dup_resend_on_the_same_connection_is_acked_and_processed_again():
    """At-least-once: a duplicate is allowed, a loss is not."""
    pair, _ = connected()
    first = Publish("$iothub/twin/PATCH/properties/reported/?$rid=7", b"{}", qos=1, packet_id=5)
    assert pair.send(first) == [MessageReceived(first.topic, b"{}", 1, 5)]
    resend = Publish(first.topic, b"{}", qos=1, packet_id=5, dup=True)
    assert pair.send(resend) == [MessageReceived(first.topic, b"{}", 1, 5)]
    assert pair.received() == [Puback(5), Puback(5)]


def test_a_new_client_reusing_packet_id_1_with_dup_is_a_new_message():
    """[MQTT-4.3.2-2]: once PUBACK was sent the id is free. A new client object restarts its ids at 1
    while the persistent session lives on, and may resend its own unacknowledged message with DUP=1."""
    pair, session = connected()
    assert pair.send(Publish("devices/myDeviceId/messages/events/", b"first", qos=1, packet_id=1)) == [
        MessageReceived("devices/myDeviceId/messages/events/", b"first", 1, 1)]
    assert pair.received() == [Puback(1)]
    pair.server.connection_lost()

    pair2, _ = connected(session, present=True)
    second = Publish("devices/myDeviceId/messages/events/", b"second", qos=1, packet_id=1, dup=True)
    assert pair2.send(second) == [MessageReceived(second.topic, b"second", 1, 1)]
    assert pair2.received() == [Puback(1)]


def test_the_session_keeps_no_inbound_packet_ids():
    assert not any("inbound" in name for name in SessionState.__slots__)


# --- subscriptions --------------------------------------------------------------------------------

def test_refused_filters_get_0x80_are_reported_and_not_recorded():
    pair = Pair()
    pair.send(DEVICE_CONNECT)
    session = SessionState("myDeviceId")
    pair.server.accept(session, False, subscription_allowed=lambda f: not f.startswith("devices/other/"))
    pair.received()
    events = pair.send(Subscribe(4, (("devices/other/#", 1), ("#", 1))))
    assert events == [Subscribed((("#", 1),), refused=("devices/other/#",))]
    assert pair.received() == [Suback(4, (0x80, 1))]
    assert session.subscriptions == {"#": 1}


# --- outbound in-flight messages -------------------------------------------------------------------

def test_inflight_publishes_are_resent_with_dup_after_reconnect():
    pair, session = connected()
    assert pair.server.publish("$iothub/methods/POST/a/?$rid=1", b"1") == 1
    assert pair.server.publish("$iothub/methods/POST/b/?$rid=2", b"2") == 2
    assert pair.server.publish("$iothub/methods/POST/c/?$rid=3", b"3") == 3
    pair.received()
    assert pair.send(Puback(2)) == [Delivered(2)]
    pair.server.connection_lost()

    pair2 = Pair()
    pair2.send(DEVICE_CONNECT)
    pair2.server.accept(session, session_present=True)
    assert pair2.received() == [
        Connack(True, 0),
        Publish("$iothub/methods/POST/a/?$rid=1", b"1", 1, 1, dup=True),
        Publish("$iothub/methods/POST/c/?$rid=3", b"3", 1, 3, dup=True),
    ]
    assert pair2.send(Puback(3), Puback(1)) == [Delivered(3), Delivered(1)]
    assert session.inflight == {}
    assert pair2.server.publish("t", b"") == 4


def test_clean_session_clears_state_and_never_reports_a_session():
    session = SessionState("myDeviceId")
    session.subscriptions["a"] = 1
    session.inflight[1] = Publish("t", b"", 1, 1)
    clean = Connect("myDeviceId", clean_session=True)
    pair, _ = connected(session, present=True, connect=clean)  # asserts CONNACK session_present=0
    assert pair.received() == []  # nothing resent
    assert session.subscriptions == {} and session.inflight == {}


def test_packet_ids_wrap_and_skip_ids_in_flight():
    session = SessionState("d")
    session._next_packet_id = 65534
    session.inflight[65535] = Publish("t", b"", 1, 65535)
    session.inflight[1] = Publish("t", b"", 1, 1)
    assert [session.allocate_packet_id() for _ in range(3)] == [65534, 2, 3]


def test_packet_ids_run_out_at_65535_in_flight():
    session = SessionState("d")
    session.inflight = dict.fromkeys(range(1, 65536))
    with pytest.raises(RuntimeError):
        session.allocate_packet_id()


# --- keepalive --------------------------------------------------------------------------------------

def test_keepalive_expires_at_one_and_a_half_times():
    clock = Clock(1000.0)
    pair, _ = connected(clock=clock, connect=Connect("d", keepalive=10))
    assert pair.server.keepalive_deadline() == 1015.0
    clock.t = 1014.9
    assert pair.server.check_keepalive() == []
    pair.send(Pingreq())  # any bytes push the deadline
    assert pair.server.keepalive_deadline() == 1029.9
    clock.t = 1029.9
    assert pair.server.check_keepalive() == [ConnectionLost("keepalive expired", False)]
    assert pair.server.state == "closed"
    assert pair.server.check_keepalive() == []
    assert pair.server.keepalive_deadline() is None


def test_partial_bytes_count_as_activity():
    clock = Clock(0.0)
    pair, _ = connected(clock=clock, connect=Connect("d", keepalive=10))
    clock.t = 14.0
    pair.server.receive_data(encode(Publish("t", b"x" * 100))[:10])
    clock.t = 20.0
    assert pair.server.check_keepalive() == []


@pytest.mark.parametrize("keepalive", [0, 1178, 65535], ids=["none-asked", "just-over-the-cap", "max"])
def test_iot_hub_drops_a_silent_client_after_29_45_minutes_at_most(keepalive):
    """IoT Hub caps its server-side timeout at 1767 s, also for a client asking for no keepalive."""
    clock = Clock(0.0)
    pair, _ = connected(clock=clock, connect=Connect("d", keepalive=keepalive))
    assert pair.server.keepalive_deadline() == 1767.0
    clock.t = 1766.9
    assert pair.server.check_keepalive() == []
    clock.t = 1767.0
    assert pair.server.check_keepalive() == [ConnectionLost("keepalive expired", False)]


def test_keepalive_below_the_cap_is_one_and_a_half_times():
    assert [keepalive_timeout(k) for k in (1, 60, 1177)] == [1.5, 90.0, 1765.5]


def test_connect_timeout_before_connect():
    clock = Clock(0.0)
    pair = Pair(clock=clock, connect_timeout=5.0)
    assert pair.server.keepalive_deadline() == 5.0
    clock.t = 5.0
    assert pair.server.check_keepalive() == [ConnectionLost("connect timeout", False)]
    assert Pair(connect_timeout=None).server.keepalive_deadline() is None


# --- refusals by the session itself ----------------------------------------------------------------

@pytest.mark.parametrize(
    "connect",
    [Connect("d", protocol_name="MQIsdp", protocol_level=3), Connect("d", protocol_level=5),
     Connect("d", protocol_level=3)],
    ids=["MQIsdp-3", "MQTT-5", "MQTT-3"],
)
def test_unsupported_protocol_gets_connack_1(connect):
    pair = Pair()
    events = pair.send(connect)
    assert len(events) == 1 and isinstance(events[0], ConnectionLost) and not events[0].clean
    assert "CONNACK 1" in events[0].reason and "MQTT 3.1.1 (protocol level 4)" in events[0].reason
    assert pair.received() == [Connack(False, 1)]
    assert pair.server.state == "closed"


def test_empty_client_id_with_persistent_session_gets_connack_2():
    pair = Pair()
    events = pair.send(Connect("", clean_session=False))
    assert len(events) == 1 and isinstance(events[0], ConnectionLost) and not events[0].clean
    assert "CONNACK 2" in events[0].reason and "use the device id as the client id" in events[0].reason
    assert pair.received() == [Connack(False, 2)]


def test_empty_client_id_with_clean_session_is_for_the_application_to_judge():
    assert Pair().send(Connect("", clean_session=True)) == [ConnectRequested(Connect("", clean_session=True))]


# --- protocol violations ---------------------------------------------------------------------------

BEFORE_CONNECT = [Publish("t", b""), Pingreq(), Subscribe(1, (("a", 0),)), Puback(1), Disconnect(), Connack(False, 0)]
AFTER_CONNECT = [
    DEVICE_CONNECT,                                      # a second CONNECT
    Publish("t", b"", qos=2, packet_id=1),               # QoS 2
    Pubrec(1), Pubrel(1), Pubcomp(1),                    # QoS 2 flow
    Connack(False, 0), Suback(1, (0,)), Unsuback(1), Pingresp(),  # server-only
]


def _assert_violation(pair: Pair, events, *, before=()):
    assert list(events[:-1]) == list(before)
    lost = events[-1]
    assert isinstance(lost, ConnectionLost) and lost.clean is False, events
    assert "internal error" not in lost.reason
    assert pair.server.state == "closed"
    assert pair.send(Pingreq()) == [] and pair.server.receive_data(b"\x00") == []


@pytest.mark.parametrize("packet", BEFORE_CONNECT, ids=lambda p: type(p).__name__)
def test_packets_before_connect_are_violations(packet):
    pair = Pair()
    events = pair.send(packet, DEVICE_CONNECT)
    _assert_violation(pair, events)
    assert "before CONNECT" in events[0].reason or "only by a server" in events[0].reason
    assert pair.received() == []


@pytest.mark.parametrize("packet", AFTER_CONNECT, ids=lambda p: type(p).__name__)
def test_violations_after_connect(packet):
    pair, _ = connected()
    events = pair.send(Publish("t", b"ok", qos=1, packet_id=1), packet, Pingreq())
    _assert_violation(pair, events, before=[MessageReceived("t", b"ok", 1, 1)])
    assert pair.received() == [Puback(1)]  # what came before the violation was answered; nothing after


def test_malformed_bytes_close_the_connection():
    pair, _ = connected()
    events = pair.server.receive_data(encode(Pingreq()) + b"\x30\xff\xff\xff\xff\x01")
    _assert_violation(pair, events)
    assert events[0].reason.startswith("protocol error:")
    assert pair.received() == [Pingresp()]


def test_malformed_first_packet_closes_without_connack():
    pair = Pair()
    _assert_violation(pair, pair.server.receive_data(b"\x10\x02\x00\x00"))
    assert pair.received() == []


def test_oversize_publish_closes_before_it_is_buffered():
    pair, _ = connected(max_packet_size=1024)
    events = pair.server.receive_data(encode(Publish("t", b"x" * 2000))[:5])
    _assert_violation(pair, events)
    assert "exceeds" in events[0].reason


@pytest.mark.parametrize("qos", [0, 1])
def test_a_message_over_256_kb_closes_the_connection_unacknowledged(qos):
    topic = "devices/d/messages/events/"
    pair, _ = connected()
    at_limit = Publish(topic, b"x" * (256 * 1024 - len(topic)), qos, 1 if qos else None)
    assert pair.send(at_limit) == [MessageReceived(topic, at_limit.payload, qos, at_limit.packet_id)]
    assert pair.received() == ([Puback(1)] if qos else [])
    over = Publish(topic, at_limit.payload + b"x", qos, 2 if qos else None)
    events = pair.send(over)
    _assert_violation(pair, events)
    assert "256 KB" in events[0].reason
    assert pair.received() == []  # no PUBACK for a message the hub did not take


def test_a_failing_handler_becomes_an_internal_error_not_an_exception(monkeypatch):
    pair, session = connected()
    monkeypatch.setattr(ServerConnection, "_send", lambda *a: 1 / 0)
    events = pair.send(Publish("t", b"", qos=1, packet_id=1))
    assert len(events) == 1 and events[0].reason.startswith("internal error") and pair.server.state == "closed"
