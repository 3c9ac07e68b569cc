"""Cloud-to-device messages sent with Microsoft's Node.js service SDK (azure-iothub `Client.send`, AMQP over
TLS to 5671 on the port-less HostName) reaching three kinds of device at once: a Node device (azure-iot-device
over MQTT, `client.on('message')`, completed), the Python device SDK (`on_message_received`) and a raw paho
MQTT client subscribed to `devices/{id}/messages/devicebound/#`; each with its properties intact, feedback
for `ack = 'full'` through `getFeedbackReceiver`, and the SDK's DeviceNotFoundError for an unknown device."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hubsettings import wellknown

from .conftest import NEEDS_443, WAIT, NodeProcess, node_env, run_node
from .wire import generate_sas_token, username

pytestmark = pytest.mark.e2e

ZONE = "north 3"  # the application property every message carries (a space: the topic encodes it)


def sent_to(device_id: str) -> dict[str, Any]:
    """What c2d.js puts in the message for this device."""
    return {"body": json.dumps({"to": device_id}, separators=(",", ":")), "messageId": f"{device_id}-mid",
            "correlationId": f"{device_id}-cid", "contentType": "application/json", "contentEncoding": "utf-8",
            "properties": {"zone": ZONE}}


class PahoDevice:
    """A raw MQTT 3.1.1 device on paho: SAS token as password, subscribed to its devicebound topic at QoS 1."""

    def __init__(self, hub, device_id: str, key: str):
        import paho.mqtt.client as mqtt
        self.prefix = f"devices/{device_id}/messages/devicebound/"
        self.received: list = []
        self.arrived = threading.Event()
        subscribed = threading.Event()
        self.client = mqtt.Client(client_id=device_id, clean_session=True, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(username(hub.host_name, device_id),
                                    generate_sas_token(f"{hub.host_name}/devices/{device_id}", key))
        self.client.tls_set(ca_certs=hub.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(hub.address, wellknown.MQTT_PORT)
        self.client.loop_start()
        self.client.subscribe(f"{self.prefix}#", qos=1)
        assert subscribed.wait(WAIT), "paho: no SUBACK for the devicebound topic"

    def _on_message(self, client, userdata, message) -> None:
        self.received.append(message)
        self.arrived.set()

    def property_bag(self, message) -> dict[str, str]:
        assert message.topic.startswith(self.prefix), message.topic
        pairs = (pair.split("=", 1) for pair in message.topic[len(self.prefix):].split("&") if pair)
        return {urllib.parse.unquote(k): urllib.parse.unquote(v) for k, v in pairs}

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class Run:
    node_id: str
    python_id: str
    paho_id: str
    unknown_id: str
    results: dict[str, Any]
    node_events: list[dict[str, Any]]
    python_messages: list
    paho: PahoDevice


@pytest.fixture(scope="module")
def c2d_run(node, hub):
    if not hub.on_443:
        pytest.skip(f"the Node.js service SDK takes no port in HostName (it fails with ENOTFOUND); {NEEDS_443}")
    from azure.iot.device import IoTHubDeviceClient

    (node_id, node_key), (python_id, python_key), (paho_id, paho_key) = (
        hub.add_device(prefix) for prefix in ("c2d-node", "c2d-python", "c2d-paho"))
    unknown_id = f"c2d-nobody-{uuid.uuid4().hex[:6]}"

    node_device = NodeProcess(node, "c2d-device.js", node_env(
        hub, DEVICE_CONNECTION_STRING=hub.device_connection_string(node_id, node_key)))
    python_messages: list = []
    python_arrived = threading.Event()
    python_device = IoTHubDeviceClient.create_from_connection_string(
        hub.device_connection_string(python_id, python_key), server_verification_cert=Path(hub.ca_file).read_text())

    def on_message(message) -> None:
        python_messages.append(message)
        python_arrived.set()

    python_device.on_message_received = on_message
    paho = None
    try:
        node_device.wait_for("connected")
        python_device.connect()
        paho = PahoDevice(hub, paho_id, paho_key)
        results = run_node(node, "c2d.js", node_env(hub, SERVICE_CONNECTION_STRING=hub.service_connection_string),
                           unknown_id, node_id, python_id, paho_id)
        node_device.wait_for("message")
        node_device.wait_for("completed")
        python_arrived.wait(WAIT)
        paho.arrived.wait(WAIT)
    finally:
        node_device.stop()
        python_device.shutdown()
        if paho:
            paho.stop()
    yield Run(node_id, python_id, paho_id, unknown_id, results, node_device.seen, python_messages, paho)


def ok(results, name):
    outcome = results[name]
    assert outcome["ok"], f"{name}: {outcome['error']}"
    return outcome["value"]


def test_the_service_sdk_sends_to_each_device(c2d_run):
    assert ok(c2d_run.results, "open") is True
    for device_id in (c2d_run.node_id, c2d_run.python_id, c2d_run.paho_id):
        assert ok(c2d_run.results, f"send:{device_id}") == "MessageEnqueued"


def test_a_node_device_receives_it_with_properties_and_completes_it(c2d_run):
    [message] = [e for e in c2d_run.node_events if e.get("event") == "message"]
    expected = sent_to(c2d_run.node_id)
    # The Node MQTT transport knows no `iothub-ack` and so lists it with the application properties.
    expected["properties"] = {**expected["properties"], "iothub-ack": "full"}
    assert {k: v for k, v in message.items() if k != "event"} == expected
    assert [e["messageId"] for e in c2d_run.node_events if e.get("event") == "completed"] == \
        [f"{c2d_run.node_id}-mid"]
    assert not [e for e in c2d_run.node_events if e.get("event") in ("clientError", "completeError")]


def test_the_python_device_sdk_receives_it_with_properties(c2d_run):
    [message] = c2d_run.python_messages
    expected = sent_to(c2d_run.python_id)
    assert message.data.decode() == expected["body"]
    assert (message.message_id, message.correlation_id, message.content_type, message.content_encoding) == (
        expected["messageId"], expected["correlationId"], expected["contentType"], expected["contentEncoding"])
    assert message.custom_properties == expected["properties"]
    assert message.ack == "full"


def test_a_raw_mqtt_device_receives_it_at_qos_1_with_the_property_bag_in_the_topic(c2d_run):
    [message] = c2d_run.paho.received
    expected = sent_to(c2d_run.paho_id)
    assert message.qos == 1 and message.payload.decode() == expected["body"]
    bag = c2d_run.paho.property_bag(message)
    assert (bag["$.mid"], bag["$.cid"], bag["$.ct"], bag["$.ce"], bag["zone"]) == (
        expected["messageId"], expected["correlationId"], expected["contentType"], expected["contentEncoding"], ZONE)
    assert bag["$.to"] == f"/devices/{c2d_run.paho_id}/messages/devicebound"
    assert bag["iothub-ack"] == "full"


def test_feedback_for_ack_full_through_the_feedback_receiver(c2d_run):
    records = ok(c2d_run.results, "feedback")
    for device_id in (c2d_run.node_id, c2d_run.python_id, c2d_run.paho_id):
        [record] = [r for r in records if r["originalMessageId"] == f"{device_id}-mid"]
        assert (record["deviceId"], record["statusCode"], record["description"]) == (device_id, "Success", "Success")
        assert record["enqueuedTimeUtc"] and "deviceGenerationId" in record


def test_a_send_to_an_unknown_device_is_the_sdks_device_not_found_error(c2d_run):
    outcome = c2d_run.results["sendUnknown"]
    assert not outcome["ok"], f"a message to {c2d_run.unknown_id} was accepted: {outcome['value']}"
    assert outcome["error"]["name"] == "DeviceNotFoundError", outcome["error"]


def test_the_hub_answers_the_sdks_amqp_close(c2d_run):
    """Client.close ends the session (channel 0), then sends the connection's close on that same channel:
    the hub must answer it, or the SDK waits forever."""
    assert ok(c2d_run.results, "close") is True
