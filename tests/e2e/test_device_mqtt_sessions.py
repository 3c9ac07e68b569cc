"""Delivery by subscription and persistent sessions, over real sockets: the unmodified device SDK,
raw paho (the MQTT client the SDK is built on, driven as Microsoft's MQTT samples drive it) and the
service REST API, against a threaded emulator and against `python -m emulator` restarted on the same
data directory.
"""

from __future__ import annotations

import json
import queue
import ssl
import threading

import paho.mqtt.client as mqtt
import pytest
import requests
from azure.iot.device import IoTHubDeviceClient, MethodResponse

from hubsettings import build_token
from tests.e2e.support import unique_device_id, wait_for

pytestmark = pytest.mark.e2e

WAIT = 30
METHODS = "$iothub/methods/POST/#"


class Service:
    """Direct-method calls over the REST front, as any service SDK makes them."""

    def __init__(self, host: str, address: str, port: int, ca_file: str, owner_key: str):
        self.url = f"https://{address}:{port}"
        self.host, self.ca_file, self.key = host, ca_file, owner_key

    def invoke(self, device_id: str, method: str, *, connect_timeout: int = 0) -> requests.Response:
        token = build_token(self.host, self.key, policy="iothubowner")
        return requests.post(
            f"{self.url}/twins/{device_id}/methods?api-version=2021-04-12", verify=self.ca_file, timeout=WAIT + 60,
            headers={"Authorization": token, "Content-Type": "application/json"},
            data=json.dumps({"methodName": method, "payload": {"n": 1}, "responseTimeoutInSeconds": WAIT,
                             "connectTimeoutInSeconds": connect_timeout}))


def owner_key() -> str:
    from hubsettings import wellknown
    return wellknown.POLICIES[wellknown.OWNER_POLICY][0]


class PahoDevice:
    """A device on plain paho: SAS username/password as Microsoft's MQTT guide shows, TLS with the
    emulator's CA, QoS 1; it answers every method request 200 and records what it receives."""

    def __init__(self, host: str, address: str, ca_pem: str, device_id: str, key: str, *, clean_session: bool):
        self.device_id = device_id
        self.received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subacks: queue.Queue[tuple[int, ...]] = queue.Queue()
        self.session_present: bool | None = None
        connected = threading.Event()
        client = self.client = mqtt.Client(client_id=device_id, clean_session=clean_session,
                                           protocol=mqtt.MQTTv311)
        client.username_pw_set(f"{host}/{device_id}/?api-version=2021-04-12",
                               build_token(f"{host}/devices/{device_id}", key))
        context = ssl.create_default_context(cadata=ca_pem)
        context.check_hostname = False  # we dial the address; the certificate names the host
        client.tls_set_context(context)

        def on_connect(_client, _userdata, flags, rc):
            assert rc == 0, f"CONNACK {rc}"
            self.session_present = bool(flags["session present"])
            connected.set()

        client.on_connect = on_connect
        client.on_subscribe = lambda _c, _u, _mid, granted: self.subacks.put(tuple(granted))
        client.on_message = self._on_message
        client.connect(address, 8883, keepalive=60)
        client.loop_start()
        assert connected.wait(WAIT), "no CONNACK"

    def _on_message(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        if message.topic.startswith("$iothub/methods/POST/"):
            rid = message.topic.split("$rid=")[1]
            self.client.publish(f"$iothub/methods/res/200/?$rid={rid}", b'{"answered": true}', qos=1)
        self.received.put(message)

    def subscribe(self, *topic_filters: str) -> tuple[int, ...]:
        self.client.subscribe([(f, 1) for f in topic_filters])
        return self.subacks.get(timeout=WAIT)

    def next_message(self, prefix: str) -> mqtt.MQTTMessage:
        while not (message := self.received.get(timeout=WAIT)).topic.startswith(prefix):
            pass
        return message

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- against the threaded emulator -------------------------------------------------------------------

@pytest.fixture
def service(emulator):
    server = emulator.server
    return Service(server.host_name, server.config.address, server.rest_port, str(server.certificates.ca_cert),
                   owner_key())


@pytest.fixture
def new_device(emulator):
    def make() -> tuple[str, str]:
        device_id = unique_device_id("sess")
        device = emulator.call(emulator.hub.create_device, device_id)
        return device_id, device.primary_key
    return make


@pytest.fixture
def paho_device(emulator, new_device):
    devices = []

    def make(clean_session: bool = False, identity: tuple[str, str] | None = None) -> PahoDevice:
        device_id, key = identity or new_device()
        server = emulator.server
        device = PahoDevice(server.host_name, server.config.address, server.certificates.ca_pem(), device_id, key,
                            clean_session=clean_session)
        devices.append(device)
        return device

    yield make
    for device in devices:
        device.close()


def test_an_sdk_device_without_a_method_handler_is_not_reachable_404103(emulator, service, new_device):
    device_id, _ = new_device()
    client = IoTHubDeviceClient.create_from_connection_string(
        emulator.call(emulator.server.device_connection_string, device_id),
        server_verification_cert=emulator.server.certificates.ca_pem())
    try:
        client.connect()
        client.patch_twin_reported_properties({"ready": True})  # connected and working, no method handler
        response = service.invoke(device_id, "reboot")
        assert response.status_code == 404 and "404103" in response.text, response.text

        client.on_method_request_received = lambda request: client.send_method_response(
            MethodResponse.create_from_method_request(request, 200, {"rebooted": True}))
        wait_for(lambda: service_reaches(service, device_id), what="the SDK's lazy SUBSCRIBE to take effect")
    finally:
        client.shutdown()


def service_reaches(service: Service, device_id: str) -> bool:
    response = service.invoke(device_id, "reboot")
    return response.status_code == 200 and response.json()["payload"] == {"rebooted": True}


def test_a_call_with_connect_timeout_waits_until_the_device_subscribes(service, paho_device):
    device = paho_device()
    result: dict[str, requests.Response] = {}
    call = threading.Thread(target=lambda: result.update(r=service.invoke(device.device_id, "m", connect_timeout=60)))
    call.start()
    try:
        assert device.subscribe(METHODS) == (1,)
    finally:
        call.join(WAIT + 70)
    assert result["r"].status_code == 200, result["r"].text


def test_a_new_client_reusing_packet_id_1_with_dup_loses_no_telemetry(emulator, paho_device):
    first = paho_device()
    info = first.client.publish(f"devices/{first.device_id}/messages/events/", b"first", qos=1)
    info.wait_for_publish(WAIT)
    first.close()
    second = paho_device(identity=(first.device_id, emulator.call(
        lambda: emulator.hub.get_device(first.device_id).primary_key)))
    assert second.session_present
    # What a new client object sends when it resends its own unacknowledged first message after a
    # reconnect: packet id 1 (ids restart with every client object), DUP=1. paho has no public call for
    # the resend, so its internal sender is used with exactly those fields.
    second.client._send_publish(1, f"devices/{first.device_id}/messages/events/".encode(), b"second", qos=1, dup=True)
    wait_for(lambda: len(emulator.call(emulator.hub.telemetry.messages, first.device_id)) == 2,
             what="both messages in telemetry")
    assert [m.body for m in emulator.call(emulator.hub.telemetry.messages, first.device_id)] == [b"first", b"second"]


def test_reported_patches_with_the_same_rid_are_both_applied(emulator, paho_device):
    device = paho_device()
    assert device.subscribe("$iothub/twin/res/#") == (1,)
    for patch in ({"a": 1}, {"b": 2}):  # Microsoft's MQTT samples use a constant $rid
        device.client.publish("$iothub/twin/PATCH/properties/reported/?$rid=1", json.dumps(patch), qos=1)
        answer = device.next_message("$iothub/twin/res/")
        assert answer.topic.startswith("$iothub/twin/res/204/?$rid=1&$version=")
    reported = emulator.get_twin(device.device_id)["properties"]["reported"]
    assert (reported["a"], reported["b"], reported["$version"]) == (1, 2, 3)


def test_a_device_subscribed_to_everything_gets_its_methods_and_patches_only(emulator, service, paho_device):
    device, other = paho_device(), paho_device()
    assert device.subscribe("#") == (1,)  # as Microsoft's MQTT sample subscribes
    assert other.subscribe(METHODS, "$iothub/twin/PATCH/properties/desired/#") == (1, 1)
    emulator.patch_desired(device.device_id, {"interval": 5})
    assert json.loads(device.next_message("$iothub/twin/PATCH/properties/desired/").payload)["interval"] == 5
    assert service.invoke(device.device_id, "m").status_code == 200
    emulator.patch_desired(other.device_id, {"secret": 1})
    assert service.invoke(other.device_id, "m").status_code == 200
    seen = [device.received.get_nowait().topic for _ in range(device.received.qsize())]
    assert not [t for t in seen if "secret" in t or other.device_id in t]


# --- across emulator restarts ------------------------------------------------------------------------

def _service_of(emulator_process) -> Service:
    info = json.loads(emulator_process.discovery_file.read_text())
    return Service(info["host_name"], info["rest_address"], info["rest_port"], info["ca_file"], owner_key())


def _seed_device(emulator_process) -> tuple[str, str]:
    from emulator.hub import Hub
    from emulator.store import SqliteStore
    seeded = Hub(emulator_process.host_name, store=SqliteStore.in_directory(emulator_process.data_dir))
    seeded.register_well_known()
    device_id = unique_device_id("restart")
    key = seeded.create_device(device_id).primary_key
    seeded.close()
    return device_id, key


def _paho(emulator_process, identity, clean_session):
    return PahoDevice(emulator_process.host_name, emulator_process.address, emulator_process.ca_pem, *identity,
                      clean_session=clean_session)


def test_subscriptions_survive_a_restart_and_clean_session_drops_them(emulator_process):
    identity = _seed_device(emulator_process)
    emulator_process.start()
    device = _paho(emulator_process, identity, clean_session=False)
    assert device.subscribe(METHODS) == (1,)
    device.close()
    assert emulator_process.stop() == 0

    emulator_process.start()
    service = _service_of(emulator_process)
    device = _paho(emulator_process, identity, clean_session=False)  # reconnects without subscribing
    try:
        assert device.session_present
        response = service.invoke(identity[0], "afterRestart")
        assert response.status_code == 200 and response.json()["payload"] == {"answered": True}, response.text
    finally:
        device.close()

    device = _paho(emulator_process, identity, clean_session=True)  # ends the persistent session
    try:
        assert not device.session_present
        response = service.invoke(identity[0], "clean")
        assert response.status_code == 404 and "404103" in response.text, response.text
    finally:
        device.close()


def test_the_sdk_still_gets_methods_after_an_emulator_restart(emulator_process):
    """The SDK subscribes once, when the handler is set, and never again after reconnecting."""
    device_id, key = _seed_device(emulator_process)
    emulator_process.start()
    host = emulator_process.host_name
    client = IoTHubDeviceClient.create_from_connection_string(
        f"HostName={host};DeviceId={device_id};SharedAccessKey={key}", server_verification_cert=emulator_process.ca_pem,
        connection_retry_interval=1)
    client.on_method_request_received = lambda request: client.send_method_response(
        MethodResponse.create_from_method_request(request, 200, {"name": request.name}))
    try:
        client.connect()
        service = _service_of(emulator_process)
        wait_for(lambda: service.invoke(device_id, "before").status_code == 200, what="the method subscription")
        assert emulator_process.stop() == 0
        wait_for(lambda: not client.connected, what="the client to notice the emulator went away")
        emulator_process.start()
        wait_for(lambda: client.connected, timeout=60, what="the client to reconnect by itself")
        response = _service_of(emulator_process).invoke(device_id, "after")
        assert response.status_code == 200 and response.json()["payload"] == {"name": "after"}, response.text
    finally:
        client.shutdown()
