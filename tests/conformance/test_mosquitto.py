"""The mosquitto command-line clients (Debian's mosquitto-clients) against the emulator, as Microsoft's
"Communicate with an IoT hub using the MQTT protocol" uses them: TLS with --cafile, SAS token as password,
`{host}/{deviceId}/?api-version=...` as username, the device id as client id, MQTT 3.1.1."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from emulator.hub.errors import DeviceNotOnline

from .wire import RawDevice, connect_packet, generate_sas_token, publish_packet, username

pytestmark = pytest.mark.e2e

WAIT = 30


def options(hub, device_id: str, key: str) -> list[str]:
    token = generate_sas_token(f"{hub.host_name}/devices/{device_id}", key)
    return ["-V", "mqttv311", "--cafile", hub.ca_file, "-h", hub.host_name, "-p", "8883", "-i", device_id,
            "-u", username(hub.host_name, device_id), "-P", token]


def run(tool: str, *args: str, timeout: float = WAIT) -> subprocess.CompletedProcess:
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=timeout)


def test_telemetry_with_properties(mosquitto, hub):
    device_id, key = hub.add_device("mosq-d2c")
    topic = f"devices/{device_id}/messages/events/$.ct=application%2Fjson&$.ce=utf-8&alert=high&room=k%C3%BCche"
    done = run(mosquitto["mosquitto_pub"], *options(hub, device_id, key), "-q", "1", "-t", topic,
               "-m", '{"id": "123"}')
    assert done.returncode == 0, done.stderr
    [message] = hub.telemetry(device_id)
    assert json.loads(message.body) == {"id": "123"}
    assert message.properties == {"alert": "high", "room": "küche"}
    assert message.system_properties["$.ct"] == "application/json"


def test_packet_ids_restart_at_1_in_every_process(mosquitto, hub):
    """Each mosquitto_pub numbers its packets from 1, with a persistent session (-c): every one is a message."""
    device_id, key = hub.add_device("mosq-ids")
    for n in range(3):
        done = run(mosquitto["mosquitto_pub"], *options(hub, device_id, key), "-c", "-q", "1",
                   "-t", f"devices/{device_id}/messages/events/", "-m", f"reading {n}")
        assert done.returncode == 0, done.stderr
    assert [m.body for m in hub.telemetry(device_id)] == [b"reading 0", b"reading 1", b"reading 2"]


def test_a_resend_with_dup_and_a_reused_packet_id_after_reconnect_is_kept(hub):
    """MQTT-4.3.2-2: once PUBACK is sent, a PUBLISH with the same packet id is a new message, DUP or not.
    A device whose connection dropped resends its in-flight message with DUP=1 and the id its new client
    numbered from 1 (hand-encoded packets: the command-line clients never set DUP)."""
    device_id, key = hub.add_device("mosq-dup")
    password = generate_sas_token(f"{hub.host_name}/devices/{device_id}", key)
    topic = f"devices/{device_id}/messages/events/"
    first = RawDevice(hub.address, hub.host_name, hub.ca_file)
    assert first.connect(connect_packet(device_id, username(hub.host_name, device_id), password,
                                        clean_session=False)) == 0
    assert first.publish(publish_packet(topic, b"before the drop", 1, dup=False)) == 1
    first.close(graceful=False)  # the connection drops
    second = RawDevice(hub.address, hub.host_name, hub.ca_file)
    assert second.connect(connect_packet(device_id, username(hub.host_name, device_id), password,
                                         clean_session=False)) == 0
    assert second.publish(publish_packet(topic, b"in flight at the drop", 1, dup=True)) == 1
    second.close()
    assert [m.body for m in hub.telemetry(device_id)] == [b"before the drop", b"in flight at the drop"]


def twin_request(mosquitto, hub, device_id, key, request_topic: str, response_topic: str, body: str = "") -> str:
    """mosquitto_rr: subscribe to the exact response topic, publish the request, print what comes back."""
    done = run(mosquitto["mosquitto_rr"], *options(hub, device_id, key), "-e", response_topic,
               "-t", request_topic, "-m", body, "-F", "%t %p", "-W", "10")
    assert done.returncode == 0, f"no answer on {response_topic}: {done.stdout} {done.stderr}"
    topic, _, payload = done.stdout.strip().partition(" ")
    assert topic == response_topic
    return payload


def test_twin_get_and_reported_patch_with_one_repeated_rid(mosquitto, hub):
    """Microsoft's samples use a constant $rid: every request is answered afresh, never from an earlier one."""
    device_id, key = hub.add_device("mosq-twin")
    rid = "1"
    get, res = f"$iothub/twin/GET/?$rid={rid}", f"$iothub/twin/res/200/?$rid={rid}"
    version = json.loads(twin_request(mosquitto, hub, device_id, key, get, res))["reported"]["$version"]
    for value in (1, 2):
        version += 1
        twin_request(mosquitto, hub, device_id, key, f"$iothub/twin/PATCH/properties/reported/?$rid={rid}",
                     f"$iothub/twin/res/204/?$rid={rid}&$version={version}", json.dumps({"a": value}))
        reported = json.loads(twin_request(mosquitto, hub, device_id, key, get, res))["reported"]
        assert (reported["a"], reported["$version"]) == (value, version)
    assert hub.threaded.get_twin(device_id)["properties"]["reported"]["a"] == 2


class Subscriber:
    """mosquitto_sub in the background, printing `topic payload` lines."""

    def __init__(self, mosquitto, hub, device_id, key, *topics: str, count: int = 1):
        args = [mosquitto["mosquitto_sub"], *options(hub, device_id, key), "-v", "-C", str(count), "-W", str(WAIT)]
        for topic in topics:
            args += ["-t", topic]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(self) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=WAIT + 10)
        return self.process.returncode, out, err


def wait_online(hub, device_id: str, subscriber: Subscriber) -> None:
    deadline = time.monotonic() + WAIT
    while not hub.threaded.call(hub.hub.is_online, device_id):
        if subscriber.process.poll() is not None:
            raise AssertionError(f"mosquitto_sub exited with {subscriber.finish()}")
        assert time.monotonic() < deadline, f"{device_id} did not connect"
        time.sleep(0.05)


def invoke_when_subscribed(hub, device_id, method, payload, timeout=20):
    """The hub delivers a call once the device subscribed to $iothub/methods/POST/#; until its SUBSCRIBE is
    processed it answers 404103 (the device may be connected but not yet subscribed)."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return hub.threaded.invoke_method(device_id, method, payload, response_timeout=timeout)
        except DeviceNotOnline:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def in_background(call) -> tuple[threading.Thread, dict]:
    """Run call() in a thread; the dict gets its "result" or its "error"."""
    outcome: dict = {}

    def run_it() -> None:
        try:
            outcome["result"] = call()
        except Exception as e:  # noqa: BLE001 - handed to the test
            outcome["error"] = e

    thread = threading.Thread(target=run_it)
    thread.start()
    return thread, outcome


def test_method_request_after_subscribing_and_the_answer(mosquitto, hub):
    device_id, key = hub.add_device("mosq-method")
    subscriber = Subscriber(mosquitto, hub, device_id, key, "$iothub/methods/POST/#")
    wait_online(hub, device_id, subscriber)
    caller, outcome = in_background(lambda: invoke_when_subscribed(hub, device_id, "reboot", {"delay": 0}))
    code, out, err = subscriber.finish()
    assert code == 0, err
    topic, _, payload = out.strip().partition(" ")
    assert topic.startswith("$iothub/methods/POST/reboot/?$rid=") and json.loads(payload) == {"delay": 0}
    rid = topic.split("$rid=", 1)[1]
    # The answer, as Microsoft's doc says: $iothub/methods/res/{status}/?$rid={request id}.
    done = run(mosquitto["mosquitto_pub"], *options(hub, device_id, key), "-q", "1",
               "-t", f"$iothub/methods/res/200/?$rid={rid}", "-m", '{"rebooting": true}')
    assert done.returncode == 0, done.stderr
    caller.join(WAIT + 30)
    assert "error" not in outcome, outcome
    assert (outcome["result"].status, outcome["result"].payload) == (200, {"rebooting": True})


def test_no_method_call_reaches_a_device_that_did_not_subscribe(mosquitto, hub):
    """A connected device subscribed only to cloud-to-device messages gets no method request: the caller gets
    404103, "the requested device isn't online or hasn't registered the direct method callback"."""
    device_id, key = hub.add_device("mosq-nomethod")
    subscriber = Subscriber(mosquitto, hub, device_id, key, f"devices/{device_id}/messages/devicebound/#")
    try:
        wait_online(hub, device_id, subscriber)
        with pytest.raises(DeviceNotOnline):
            hub.threaded.invoke_method(device_id, "reboot", {}, response_timeout=5)
        assert subscriber.process.poll() is None  # it received nothing
    finally:
        subscriber.process.terminate()
        subscriber.process.wait(WAIT)


def test_subscribing_to_everything_with_hash(mosquitto, hub):
    """Microsoft's MQTT sample subscribes to `#`: granted, and what the device is sent arrives on it."""
    device_id, key = hub.add_device("mosq-hash")
    subscriber = Subscriber(mosquitto, hub, device_id, key, "#")
    wait_online(hub, device_id, subscriber)
    caller, _ = in_background(lambda: invoke_when_subscribed(hub, device_id, "ping", None, timeout=5))
    code, out, err = subscriber.finish()
    caller.join(WAIT + 30)  # mosquitto_sub -C 1 exits without answering: the call times out
    assert "denied" not in err and code == 0, (code, err)
    assert out.startswith("$iothub/methods/POST/ping/?$rid="), out
