"""MQTT's will and retain as IoT Hub implements them, driven by raw paho over real sockets as Microsoft's
MQTT guide describes: a will on the telemetry topic arrives as telemetry marked `iothub-MessageType: Will`
when the connection ends without DISCONNECT (and never after one); RETAIN=1 telemetry is marked
`mqtt-retain`."""

from __future__ import annotations

import ssl
import threading

import paho.mqtt.client as mqtt
import pytest

from emulator.testing import Emulator
from hubsettings import build_token
from tests.e2e.support import unique_device_id, wait_for

pytestmark = pytest.mark.e2e

WAIT = 30


def connect_device(emulator, will: tuple[str, bytes] | None = None) -> tuple[str, mqtt.Client, threading.Event]:
    """A raw paho device of its own, connected (clean_session=0), with `will` if given."""
    server = emulator.server
    device_id = unique_device_id("will")
    key = emulator.call(emulator.hub.create_device, device_id).primary_key
    client = mqtt.Client(client_id=device_id, clean_session=False, protocol=mqtt.MQTTv311)
    client.username_pw_set(f"{server.host_name}/{device_id}/?api-version=2021-04-12",
                           build_token(f"{server.host_name}/devices/{device_id}", key))
    context = ssl.create_default_context(cadata=server.certificates.ca_pem())
    context.check_hostname = False  # we dial the address; the certificate names the host
    client.tls_set_context(context)
    if will is not None:
        client.will_set(will[0].format(device_id=device_id), will[1], qos=1)
    connected, closed = threading.Event(), threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.on_disconnect = lambda *_: closed.set()
    client.connect(server.config.address, 8883, keepalive=60)
    client.loop_start()
    assert connected.wait(WAIT), "no CONNACK"
    return device_id, client, closed


@pytest.fixture
def connect(emulator):
    clients = []

    def make(will: tuple[str, bytes] | None = None) -> tuple[str, mqtt.Client, threading.Event]:
        device_id, client, closed = connect_device(emulator, will)
        clients.append(client)
        return device_id, client, closed

    yield make
    for client in clients:
        client.disconnect()
        client.loop_stop()


def telemetry(emulator, device_id):
    return emulator.call(emulator.hub.telemetry.messages, device_id)


def test_the_will_arrives_as_telemetry_when_the_hub_drops_the_connection(emulator, connect):
    device_id, client, closed = connect(("devices/{device_id}/messages/events/%24.ct=text%2Fplain&why=lost",
                                         b"gone"))
    client.publish("not/an/iot/hub/topic", b"x", qos=1)  # IoT Hub closes the connection for this
    assert closed.wait(WAIT), "the emulator did not close the connection"
    [will] = wait_for(lambda: telemetry(emulator, device_id), what="the will")
    assert will.body == b"gone"
    assert will.properties == {"why": "lost", "iothub-MessageType": "Will"}
    assert will.system_properties == {"$.ct": "text/plain"}


def test_no_will_after_a_disconnect_and_retained_telemetry_is_marked(emulator, connect):
    device_id, client, closed = connect(("devices/{device_id}/messages/events/", b"gone"))
    client.publish(f"devices/{device_id}/messages/events/", b"kept?", qos=1, retain=True).wait_for_publish(WAIT)
    client.disconnect()
    assert closed.wait(WAIT)
    # Offline means the emulator has handled the DISCONNECT (and would have sent a will by now).
    wait_for(lambda: not emulator.call(emulator.hub.is_online, device_id), what="the device offline")
    [message] = telemetry(emulator, device_id)
    assert (message.body, message.properties) == (b"kept?", {"mqtt-retain": "true"})


def test_an_emulator_that_stops_sends_no_wills(tmp_path):
    """Its own hang-ups at stop are not a device's lost connection: restarted on the same data, the
    telemetry log holds no will (while a connection the hub drops does give one, above)."""
    with Emulator(data_dir=tmp_path / "data") as emulator:
        device_id, client, closed = connect_device(emulator, ("devices/{device_id}/messages/events/", b"gone"))
        client.reconnect_delay_set(60, 60)  # no reconnect attempts while the emulator stops
    try:
        assert closed.wait(WAIT), "stopping the emulator did not close the device's connection"
    finally:
        client.loop_stop()
    with Emulator(data_dir=tmp_path / "data") as restarted:
        assert telemetry(restarted, device_id) == []
