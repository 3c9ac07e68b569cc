"""What IoT Hub does with MQTT's will and retain, which it implements its own way: a will on the device's
telemetry topic is sent as telemetry marked `iothub-MessageType: Will` when the connection ends without
DISCONNECT; a PUBLISH with RETAIN=1 is not retained but marked `mqtt-retain: true`."""

from dataclasses import replace

import pytest

from mqttcodec import Disconnect, Publish, Will
from .test_device_front import FakeClient, clock, front, hub, hub_connect  # noqa: F401

WILL_TOPIC = "devices/d1/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&state=gone"


def connect_with_will(front, will):
    client = FakeClient(front)
    client.send(replace(hub_connect(), will=will))
    client.take()
    assert client.connection.state == "connected"
    return client


def test_will_is_sent_as_telemetry_when_the_connection_drops(front, hub):
    client = connect_with_will(front, Will(WILL_TOPIC, b'{"bye": 1}', 1))
    assert hub.telemetry.messages("d1") == []  # nothing while the device is connected
    client.connection.connection_lost()
    front.client_closed(client)  # the transport went away with no DISCONNECT
    [message] = hub.telemetry.messages("d1")
    assert message.body == b'{"bye": 1}'
    assert message.properties == {"state": "gone", "iothub-MessageType": "Will"}
    assert message.system_properties == {"$.ct": "application/json", "$.ce": "utf-8"}
    front.client_closed(client)  # the transport reports its end again: still one will
    assert len(hub.telemetry.messages("d1")) == 1


def test_will_is_sent_when_the_hub_drops_a_client_breaking_its_rules(front, hub):
    client = connect_with_will(front, Will("devices/d1/messages/events/", b"w"))
    client.send(Publish("not/an/iot/hub/topic", b"x", 1, 1))
    assert client.closed
    [message] = hub.telemetry.messages("d1")
    assert (message.body, message.properties) == (b"w", {"iothub-MessageType": "Will"})


def test_no_will_when_the_emulator_itself_stops(front, hub):
    client = connect_with_will(front, Will(WILL_TOPIC, b"w"))
    front.discard_wills()  # what the server does before closing every connection
    client.connection.connection_lost()
    front.client_closed(client)
    assert hub.telemetry.messages("d1") == []


def test_disconnect_discards_the_will(front, hub):
    client = connect_with_will(front, Will(WILL_TOPIC, b"w"))
    client.send(Disconnect())
    assert client.closed
    front.client_closed(client)
    assert hub.telemetry.messages("d1") == []


@pytest.mark.parametrize("topic", ["devices/d2/messages/events/", "some/topic", "devices/d1/messages/eventsX"])
def test_a_will_on_another_topic_is_not_sent(front, hub, topic):
    client = connect_with_will(front, Will(topic, b"w"))
    client.connection.connection_lost()
    front.client_closed(client)
    assert hub.telemetry.messages() == []


def test_no_will_for_a_device_deleted_meanwhile(front, hub):
    client = connect_with_will(front, Will(WILL_TOPIC, b"w"))
    hub.delete_device("d1")
    front.client_closed(client)
    assert hub.telemetry.messages() == []


@pytest.mark.parametrize("qos", [0, 1])
def test_retained_telemetry_is_marked_mqtt_retain(front, hub, qos):
    client = FakeClient(front)
    client.send(hub_connect())
    client.take()
    client.send(Publish("devices/d1/messages/events/a=1", b"r", qos, 1 if qos else None, retain=True),
                Publish("devices/d1/messages/events/", b"plain", qos, 2 if qos else None))
    first, second = hub.telemetry.messages("d1")
    assert first.properties == {"a": "1", "mqtt-retain": "true"}
    assert second.properties == {}


def test_a_connection_taken_over_by_a_new_one_sends_its_will(front, hub):
    old = connect_with_will(front, Will(WILL_TOPIC, b"old"))
    new = FakeClient(front)
    new.send(hub_connect())
    assert old.closed and new.connection.state == "connected"
    assert [m.body for m in hub.telemetry.messages("d1")] == [b"old"]
