"""Our session against paho-mqtt 1.6.1, the MQTT client inside azure-iot-device, over loopback TCP.

paho writes synchronously when no network thread runs, so the test interleaves the two ends by hand
with no threads and no sleeps: every paho call's bytes are already in the socket when we read.
"""

import select
import socket

import pytest
from emulator.mqtt.session import (
    ConnectionLost,
    ConnectRequested,
    Delivered,
    MessageReceived,
    ServerConnection,
    SessionState,
    Subscribed,
)

mqtt = pytest.importorskip("paho.mqtt.client")


class ServerEnd:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.conn = ServerConnection()

    def pump(self, flush: bool = True) -> list:
        """Everything the client has sent so far -> events; then write our answers."""
        events = []
        ready, _, _ = select.select([self.sock], [], [], 2.0)
        while ready:
            data = self.sock.recv(65536)
            if not data:
                break
            events += self.conn.receive_data(data)
            ready, _, _ = select.select([self.sock], [], [], 0.05)
        if flush:
            self.flush()
        return events

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())


@pytest.fixture
def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    yield srv
    srv.close()


def test_paho_client_full_exchange(listener):
    seen = {"connect": None, "subscribed": [], "published": [], "messages": []}
    client = mqtt.Client(client_id="myDeviceId", clean_session=False, protocol=mqtt.MQTTv311)
    client.username_pw_set("hub/myDeviceId/?api-version=2019-10-01", "SharedAccessSignature sr=x&sig=y&se=1")
    client.on_connect = lambda c, u, flags, rc: seen.__setitem__("connect", (flags["session present"], rc))
    client.on_subscribe = lambda c, u, mid, granted: seen["subscribed"].append(granted)
    client.on_publish = lambda c, u, mid: seen["published"].append(mid)
    client.on_message = lambda c, u, msg: seen["messages"].append((msg.topic, msg.payload, msg.qos))
    client.connect(*listener.getsockname(), keepalive=60)
    sock, _ = listener.accept()
    server = ServerEnd(sock)
    try:
        [requested] = server.pump()
        assert isinstance(requested, ConnectRequested)
        connect = requested.connect
        assert (connect.client_id, connect.clean_session, connect.keepalive) == ("myDeviceId", False, 60)
        assert connect.password == b"SharedAccessSignature sr=x&sig=y&se=1"
        session = SessionState("myDeviceId")
        server.conn.accept(session, session_present=False)
        server.flush()
        client.loop(timeout=1.0)
        assert seen["connect"] == (0, 0)

        client.subscribe("$iothub/methods/POST/#", qos=1)
        assert server.pump() == [Subscribed((("$iothub/methods/POST/#", 1),))]
        client.loop(timeout=1.0)
        assert seen["subscribed"] == [(1,)]

        info = client.publish("devices/myDeviceId/messages/events/", b"hello", qos=1)
        [message] = server.pump()
        assert message == MessageReceived("devices/myDeviceId/messages/events/", b"hello", 1, info.mid)
        client.loop(timeout=1.0)
        assert seen["published"] == [info.mid]

        packet_id = server.conn.publish("$iothub/methods/POST/reboot/?$rid=1", b'{"delay": 1}')
        server.flush()
        client.loop(timeout=1.0)  # paho PUBACKs as it delivers
        assert seen["messages"] == [("$iothub/methods/POST/reboot/?$rid=1", b'{"delay": 1}', 1)]
        assert server.pump() == [Delivered(packet_id)]
        assert session.inflight == {}

        client._send_pingreq()
        assert server.pump() == []
        assert client.loop(timeout=1.0) == mqtt.MQTT_ERR_SUCCESS  # PINGRESP read without complaint

        client.disconnect()
        assert server.pump() == [ConnectionLost("client disconnected", True)]
    finally:
        sock.close()


def test_paho_resends_unacked_publish_with_dup_and_we_process_it_again(listener):
    """The reconnect story from the wire facts, with paho as the device: the resend is processed again
    (at-least-once), never dropped."""
    client = mqtt.Client(client_id="d1", clean_session=False, protocol=mqtt.MQTTv311)
    session = SessionState("d1")
    client.connect(*listener.getsockname())
    sock, _ = listener.accept()
    first = ServerEnd(sock)
    first.pump()
    first.conn.accept(session, False)
    first.flush()
    client.loop(timeout=1.0)

    info = client.publish("$iothub/twin/PATCH/properties/reported/?$rid=r1", b"{}", qos=1)
    [message] = first.pump(flush=False)  # acked by the session...
    assert message == MessageReceived("$iothub/twin/PATCH/properties/reported/?$rid=r1", b"{}", 1, info.mid)
    first.conn.connection_lost()  # ...but the PUBACK is lost with the connection
    sock.close()
    client.loop(timeout=0.5)  # paho notices

    client.reconnect()
    sock, _ = listener.accept()
    second = ServerEnd(sock)
    try:
        [requested] = second.pump()
        second.conn.accept(session, session_present=True)
        second.flush()
        client.loop(timeout=1.0)  # CONNACK; paho then resends what is unacknowledged
        events = second.pump()
        assert events == [MessageReceived("$iothub/twin/PATCH/properties/reported/?$rid=r1", b"{}", 1, info.mid)]
        client.loop(timeout=1.0)
        assert info.is_published()
    finally:
        client.disconnect()
        sock.close()


def test_our_encoder_against_pahos_decoder_for_a_large_payload(listener):
    received = []
    client = mqtt.Client(client_id="d2", protocol=mqtt.MQTTv311)
    client.on_message = lambda c, u, msg: received.append(msg.payload)
    client.connect(*listener.getsockname())
    sock, _ = listener.accept()
    server = ServerEnd(sock)
    try:
        server.pump()
        server.conn.accept(SessionState("d2"), False)
        payload = bytes(range(256)) * 1000
        server.conn.publish("devices/d2/messages/devicebound/", payload, qos=0)
        server.flush()
        for _ in range(50):
            client.loop(timeout=0.2)
            if received:
                break
        assert received == [payload]
    finally:
        sock.close()
