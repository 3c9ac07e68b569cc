"""Cloud-to-device messages end to end: azure-iot-hub's send_c2d_message (AMQP/TLS 5671) reaching
azure-iot-device's on_message_received and a raw paho MQTT device with properties intact, feedback,
the service CLI (send, purge, errors), and a message for an offline device surviving a restart."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

from emulator import loopback
from emulator.server import EmulatorConfig, ThreadedEmulator
from hubsettings import ServiceSettings, build_token, parse_connection_string, wellknown
from service.cloud_messages import receive_feedback, trust_ca

from .support import unique_device_id, wait_for

pytestmark = pytest.mark.e2e
AMQP_PORTS = (wellknown.MQTT_PORT, wellknown.REST_PORT, 5671)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("c2d")
    try:
        address = loopback.free_loopback_address(AMQP_PORTS, tries=30, fall_back_to_127_0_0_1=True)
    except loopback.NoFreeLoopbackAddress as e:
        pytest.skip(str(e))
    config = EmulatorConfig(address=address, data_dir=data_dir, discovery_file=data_dir / "discovery.json")
    with ThreadedEmulator(config) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_global_ca_overrides(monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)


def new_device(emulator) -> tuple[str, str]:
    device_id = unique_device_id("c2d")
    emulator.call(lambda: emulator.hub.create_device(device_id))
    return device_id, emulator.server.device_connection_string(device_id)


def registry_manager(emulator):
    from azure.iot.hub import IoTHubRegistryManager
    info = emulator.server.info()
    manager = IoTHubRegistryManager.from_connection_string(info.service_connection_string)
    trust_ca(manager, info.ca_file)  # the SDK's AMQP sender has no CA option of its own
    return manager


def service_settings(emulator) -> ServiceSettings:
    info = emulator.server.info()
    return ServiceSettings(parse_connection_string(info.service_connection_string), Path(info.ca_file), "test")


def test_sdk_message_reaches_the_python_device_sdk_with_properties_and_feedback(emulator):
    from azure.iot.device import IoTHubDeviceClient
    device_id, connection_string = new_device(emulator)
    received, arrived = [], threading.Event()
    device = IoTHubDeviceClient.create_from_connection_string(
        connection_string, server_verification_cert=Path(emulator.server.info().ca_file).read_text())

    def on_message(message):
        received.append(message)
        arrived.set()

    device.on_message_received = on_message
    device.connect()
    manager = registry_manager(emulator)
    try:
        manager.send_c2d_message(device_id, '{"valve":"open"}', properties={
            "messageId": "m-e2e-1", "correlationId": "corr-1", "contentType": "application/json",
            "contentEncoding": "utf-8", "iothub-ack": "full", "zone": "3", "note": "a&b=c d"})
        assert arrived.wait(30)
    finally:
        manager.amqp_svc_client.disconnect_sync()
        device.shutdown()
    [message] = received
    assert message.data == b'{"valve":"open"}'
    assert (message.message_id, message.correlation_id, message.content_type, message.content_encoding) == \
        ("m-e2e-1", "corr-1", "application/json", "utf-8")
    assert message.custom_properties == {"zone": "3", "note": "a&b=c d"}
    assert message.ack == "full"
    record = next(receive_feedback(service_settings(emulator), lambda r: r.original_message_id == "m-e2e-1", 30))
    assert (record.original_message_id, record.device_id, record.status) == ("m-e2e-1", device_id, "Success")


def test_raw_paho_device_receives_and_completes_with_puback(emulator):
    import paho.mqtt.client as mqtt
    device_id, _ = new_device(emulator)
    key = emulator.call(lambda: emulator.hub.get_device(device_id).primary_key)
    host = emulator.server.host_name
    client = mqtt.Client(client_id=device_id, clean_session=False, protocol=mqtt.MQTTv311)
    client.username_pw_set(f"{host}/{device_id}/?api-version=2021-04-12",
                           build_token(f"{host}/devices/{device_id}", key))
    client.tls_set(ca_certs=emulator.server.info().ca_file, cert_reqs=ssl.CERT_REQUIRED)
    got: list = []
    client.on_message = lambda c, u, message: got.append(message)
    subscribed = threading.Event()
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect(emulator.server.config.address, wellknown.MQTT_PORT)
    client.loop_start()
    try:
        client.subscribe(f"devices/{device_id}/messages/devicebound/#", qos=1)
        assert subscribed.wait(15)
        manager = registry_manager(emulator)
        try:
            manager.send_c2d_message(device_id, "to paho", properties={"messageId": "p-1", "k": "v 1"})
        finally:
            manager.amqp_svc_client.disconnect_sync()
        wait_for(lambda: got, what="the C2D publish")
        wait_for(lambda: emulator.call(lambda: emulator.hub.c2d.depth(device_id)) == 0, what="completion on PUBACK")
    finally:
        client.loop_stop()
        client.disconnect()
    [message] = got
    assert message.qos == 1 and message.payload == b"to paho"
    prefix = f"devices/{device_id}/messages/devicebound/"
    assert message.topic.startswith(prefix)
    # As IoT Hub sends it: every name and value URL-encoded, `$` included (`%24.mid=...`).
    assert "%24.mid=p-1" in message.topic
    bag = {urllib.parse.unquote(k): urllib.parse.unquote(v)
           for k, v in (pair.split("=", 1) for pair in message.topic[len(prefix):].split("&"))}
    assert bag["$.mid"] == "p-1" and bag["k"] == "v 1"
    assert bag["$.to"] == f"/devices/{device_id}/messages/devicebound"


def run_cli(emulator, *args: str) -> subprocess.CompletedProcess:
    info = emulator.server.info()
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
    env.update(IOTHUB_CONNECTION_STRING=info.service_connection_string, IOTHUB_CA_FILE=info.ca_file)
    return subprocess.run([sys.executable, "-m", "service", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_send_purge_and_one_line_errors(emulator):
    device_id, _ = new_device(emulator)
    sent = run_cli(emulator, "--json", "message", "send", device_id, "hi", "-p", "k=v", "--message-id", "cli-1",
                   "--ttl", "600", "--ack", "full")
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout) == {"deviceId": device_id, "messageId": "cli-1", "queued": True}
    [queued] = emulator.call(lambda: [m for m in emulator.hub.c2d.take_for_delivery(device_id)])
    assert (queued.body, queued.properties, queued.ack) == (b"hi", {"k": "v"}, "full")
    assert abs(queued.expiry_time - (queued.enqueued_time + 600)) < 30  # --ttl reached the hub as expiry

    missing = run_cli(emulator, "message", "send", "no-such-device", "hi")
    assert missing.returncode == 4
    assert missing.stderr.strip().splitlines()[-1] == f"Error: device 'no-such-device' not found on hub " \
        f"{emulator.server.info().service_connection_string.split(';')[0].split('=')[1]}"

    emulator.call(lambda: [emulator.hub.send_cloud_message(device_id, b"x") for _ in range(49)])
    full = run_cli(emulator, "message", "send", device_id, "one too many")
    assert full.returncode == 1
    [error_line] = [line for line in full.stderr.splitlines() if line.startswith("Error:")]
    assert "DeviceMaximumQueueDepthExceeded" in error_line and "Traceback" not in full.stderr

    purged = run_cli(emulator, "--json", "message", "purge", device_id)
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout)["totalMessagesPurged"] == 50
    assert run_cli(emulator, "message", "purge", "no-such-device").returncode == 4


def test_cli_waits_for_feedback_from_a_connected_device(emulator):
    from azure.iot.device import IoTHubDeviceClient
    device_id, connection_string = new_device(emulator)
    device = IoTHubDeviceClient.create_from_connection_string(
        connection_string, server_verification_cert=Path(emulator.server.info().ca_file).read_text())
    device.on_message_received = lambda message: None
    device.connect()
    try:
        result = run_cli(emulator, "--json", "message", "send", device_id, "ping", "--message-id", "fb-1",
                         "--ack", "positive", "--wait-feedback", "--timeout", "60")
    finally:
        device.shutdown()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["feedback"]["statusCode"] == "Success"


def test_message_for_an_offline_device_survives_a_restart(emulator_process):
    from azure.iot.device import IoTHubDeviceClient
    from azure.iot.hub import IoTHubRegistryManager
    running = emulator_process.start()
    info = json.loads(running.discovery_file.read_text())
    manager = IoTHubRegistryManager.from_connection_string(info["service_connection_string"])
    trust_ca(manager, info["ca_file"])
    try:
        manager.send_c2d_message(wellknown.DEVICE_ID, "kept", properties={"messageId": "restart-1"})
    finally:
        manager.amqp_svc_client.disconnect_sync()
    running.stop()
    running.start()
    got, arrived = [], threading.Event()
    device = IoTHubDeviceClient.create_from_connection_string(
        wellknown.device_connection_string(running.host_name), server_verification_cert=running.ca_pem)
    device.on_message_received = lambda message: (got.append(message), arrived.set())
    device.connect()
    try:
        assert arrived.wait(30)
    finally:
        device.shutdown()
    assert got[0].data == b"kept" and got[0].message_id == "restart-1"
