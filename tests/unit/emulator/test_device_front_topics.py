"""Requests on IoT Hub's topics that break the topic rules of Microsoft's MQTT guide: the hub closes the
connection rather than guess (a method status must be an integer, a twin request needs its `$rid`)."""

import pytest

from mqttcodec import Publish
from .test_device_front import FakeClient, clock, connected, front, hub  # noqa: F401


@pytest.mark.parametrize("topic", [
    "$iothub/methods/res/ok/?$rid=1",  # the status is not an integer
    "$iothub/methods/res/200/",  # no $rid
    "$iothub/twin/GET/",  # no $rid
    "$iothub/twin/PATCH/properties/reported/?$version=3",  # no $rid
])
def test_a_request_breaking_the_topic_rules_closes_the_connection(front, hub, topic):
    client = connected(front)
    client.send(Publish(topic, b"{}", 1, 1))
    assert client.closed
    assert not hub.is_online("d1")


def test_a_method_status_may_be_any_integer(front):
    client = connected(front)
    client.send(Publish("$iothub/methods/res/-7/?$rid=nobody-waits", b"{}", 1, 1))
    assert not client.closed  # an answer nobody awaits is logged and dropped, the device stays
