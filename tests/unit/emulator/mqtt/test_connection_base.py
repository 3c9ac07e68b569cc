"""The connection logic both MQTT transports share (emulator/mqtt/connection_base.py): events to the device front,
packets pipelined behind CONNECT, and the keepalive sweep."""

from emulator.hub import FakeClock, Hub
from mqttcodec import Connack, Connect, PacketReader, Publish, encode
from emulator.mqtt.connection_base import ClientConnectionBase
from emulator.mqtt.device_front import DeviceFront
from emulator.mqtt.server import _ClientProtocol
from emulator.mqtt.session import ServerConnection
from emulator.rest.websocket import WebSocketClient
from hubsettings import build_token

NOW = 1_700_000_000
KEY = "8cc0Q0uyQZXpjwRZmcbS7ylk+eo0FLauFovl2gd1Vbc="


class FakeClient(ClientConnectionBase):
    def __init__(self, front, now):
        self.front = front
        self.peer = "test"
        self.connection = ServerConnection(now=now)
        self.packets = []
        self._reader = PacketReader()

    def flush(self):
        self.packets += self._reader.feed(self.connection.data_to_send())


def test_both_transports_share_the_one_implementation():
    for client_class in (_ClientProtocol, WebSocketClient):
        assert issubclass(client_class, ClientConnectionBase)
        assert client_class._process is ClientConnectionBase._process
        assert client_class.check_keepalive is ClientConnectionBase.check_keepalive


def test_pipelined_packets_are_processed_and_an_expired_keepalive_disconnects_the_device():
    hub = Hub("localhost", clock=FakeClock(NOW))
    hub.create_device("d1", primary_key=KEY)
    seconds = [0.0]
    client = FakeClient(DeviceFront(hub), lambda: seconds[0])
    connect = Connect("d1", "localhost/d1/?api-version=2019-10-01",
                      build_token("localhost/devices/d1", KEY, now=NOW).encode(), keepalive=10, clean_session=False)
    twin_get = Publish("$iothub/twin/GET/?$rid=r1", b" ", 1, 1)
    client._process(client.connection.receive_data(encode(connect) + encode(twin_get)))  # one TCP read
    assert client.packets[0] == Connack(False, 0)
    assert any(isinstance(p, Publish) and p.topic == "$iothub/twin/res/200/?$rid=r1" for p in client.packets)
    assert hub.is_online("d1")
    seconds[0] = 14.0
    client.check_keepalive()
    assert hub.is_online("d1")  # 1.5 x keepalive has not passed yet
    seconds[0] = 16.0
    client.check_keepalive()
    assert client.connection.state == "closed" and not hub.is_online("d1")
