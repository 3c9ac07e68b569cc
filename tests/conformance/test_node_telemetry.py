"""A device on Microsoft's Node.js SDK (azure-iot-device over MQTT) sends telemetry; services read it
as on Azure, from the built-in Event Hubs-compatible endpoint: azure-eventhub's EventHubConsumerClient
and `iothub-service monitor` (which finds the endpoint through the hub's redirect)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from emulator.hub.telemetry import partition_of

from .conftest import NodeProcess, node_env

pytestmark = pytest.mark.e2e


def test_node_device_telemetry_read_from_the_event_hubs_endpoint(node, hub):
    from azure.eventhub import EventHubConsumerClient

    device_id, key = hub.add_device("node-telemetry")
    client = NodeProcess(node, "device.js", node_env(hub, DEVICE_CONNECTION_STRING=hub.device_connection_string(
        device_id, key)), "mqtt")
    try:
        client.wait_for("sent")
    finally:
        client.stop()

    server = hub.threaded.server
    consumer = EventHubConsumerClient.from_connection_string(
        server.event_hub_connection_string(), consumer_group="$Default", connection_verify=hub.ca_file)
    events: list = []

    def on_event(context, event):
        if event is not None and event.system_properties.get(b"iothub-connection-device-id") == device_id.encode():
            events.append(event)
            consumer.close()

    timer = threading.Timer(60, consumer.close)
    timer.start()
    try:
        consumer.receive(on_event=on_event, partition_id=str(partition_of(device_id)), starting_position="-1",
                         max_wait_time=1)
    finally:
        timer.cancel()
    [event] = events
    assert event.body_as_json() == {"temperature": 21.5}
    assert event.properties == {b"alert": b"high"}
    system = event.system_properties
    assert (system[b"message-id"], system[b"content-type"], system[b"content-encoding"]) == \
        (b"mqtt-1", b"application/json", b"utf-8")
    assert system[b"iothub-message-source"] == b"Telemetry"

    env = dict(os.environ, IOTHUB_CONNECTION_STRING=hub.service_connection_string, IOTHUB_CA_FILE=hub.ca_file)
    monitor = subprocess.run([sys.executable, "-m", "service", "monitor", device_id, "--start", "earliest",
                              "--count", "1", "--timeout", "60", "--json", "--properties"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert monitor.returncode == 0, monitor.stderr
    record = json.loads(monitor.stdout)
    assert record["deviceId"] == device_id and record["body"] == {"temperature": 21.5}
    assert record["properties"] == {"alert": "high"} and record["systemProperties"]["message-id"] == "mqtt-1"
