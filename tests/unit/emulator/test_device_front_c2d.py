"""Cloud-to-device messages through the MQTT device front: QoS 1 on the devicebound topic with the
property bag, only to a subscribed device, completed by its PUBACK, resent after a reconnect."""

import urllib.parse

from mqttcodec import Connack, Disconnect, Puback, Publish, Subscribe

from .test_device_front import KEY, FakeClient, clock, connected, front, hub, hub_connect  # noqa: F401

DEVICEBOUND = "devices/d1/messages/devicebound/#"


def subscribed(front, topic_filter=DEVICEBOUND):
    client = connected(front)
    client.send(Subscribe(1, ((topic_filter, 1),)))
    client.take()
    return client


def bag(topic: str) -> dict[str, str]:
    prefix = "devices/d1/messages/devicebound/"
    assert topic.startswith(prefix)
    return {urllib.parse.unquote(k): urllib.parse.unquote(v)
            for k, v in (pair.split("=", 1) for pair in topic[len(prefix):].split("&"))}


def test_message_goes_out_at_qos_1_with_its_properties_in_the_topic(front, hub):
    client = subscribed(front)
    hub.send_cloud_message("d1", b"hello", message_id="m 1", correlation_id="c/1", user_id="u1",
                           content_type="application/json", content_encoding="utf-8",
                           properties={"a&b": "x=y", "plain": "v"}, ack="full")
    [publish] = client.publishes()
    assert publish.qos == 1 and publish.payload == b"hello"
    properties = bag(publish.topic)
    assert properties.pop("$.exp").endswith("Z")
    assert properties == {"$.mid": "m 1", "$.cid": "c/1", "$.uid": "u1", "$.to": "/devices/d1/messages/devicebound",
                          "$.ct": "application/json", "$.ce": "utf-8", "iothub-ack": "full", "a&b": "x=y",
                          "plain": "v"}


def test_puback_completes_the_message_and_gives_feedback(front, hub):
    client = subscribed(front)
    sent = hub.send_cloud_message("d1", b"x", ack="positive")
    [publish] = client.publishes()
    assert hub.c2d.depth("d1") == 1
    client.send(Puback(publish.packet_id))
    assert hub.c2d.depth("d1") == 0
    assert hub.c2d.take_feedback().records[0]["originalMessageId"] == sent.message_id


def test_nothing_is_sent_until_the_device_subscribes(front, hub):
    client = connected(front)
    hub.send_cloud_message("d1", b"waits")
    assert client.publishes() == []
    client.send(Subscribe(1, (("$iothub/methods/POST/#", 0),)))
    assert client.publishes() == []
    client.send(Subscribe(2, (("devices/d1/messages/+/#", 1),)))
    assert [p.payload for p in client.publishes()] == [b"waits"]


def test_offline_device_gets_its_queue_in_order_when_it_comes_back(front, hub):
    client = subscribed(front)
    client.send(Disconnect())
    for body in (b"one", b"two", b"three"):
        hub.send_cloud_message("d1", body)
    again = FakeClient(front)
    again.send(hub_connect("d1", KEY))  # persistent session: subscriptions are remembered
    packets = again.take()
    assert packets[0] == Connack(True, 0)
    assert [p.payload for p in packets[1:] if isinstance(p, Publish)] == [b"one", b"two", b"three"]


def test_unacknowledged_message_is_resent_once_on_a_persistent_reconnect(front, hub):
    client = subscribed(front)
    hub.send_cloud_message("d1", b"once")
    [first] = client.publishes()
    client.connection.close()  # the connection drops before the device's PUBACK
    client.flush()
    again = FakeClient(front)
    again.send(hub_connect("d1", KEY))
    resent = [p for p in again.take() if isinstance(p, Publish)]
    assert [(p.payload, p.packet_id, p.dup) for p in resent] == [(b"once", first.packet_id, True)]
    again.send(Puback(first.packet_id))
    assert hub.c2d.depth("d1") == 0


def test_clean_session_reconnect_gets_the_message_again_as_a_new_delivery(front, hub):
    client = subscribed(front)
    hub.send_cloud_message("d1", b"again")
    client.publishes()
    client.connection.close()
    client.flush()
    clean = FakeClient(front)
    clean.send(hub_connect("d1", KEY, clean_session=True))
    assert [p for p in clean.take() if isinstance(p, Publish)] == []  # no subscription yet
    clean.send(Subscribe(1, ((DEVICEBOUND, 1),)))
    [publish] = clean.publishes()
    assert publish.payload == b"again" and not publish.dup
    assert hub.c2d.in_flight("d1")[0].delivery_count == 2


def test_another_devices_messages_never_arrive(front, hub):
    client = subscribed(front)
    hub.send_cloud_message("d2", b"not yours")
    assert client.publishes() == []
