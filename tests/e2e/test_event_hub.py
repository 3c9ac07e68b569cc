"""Telemetry read as on Azure, from the built-in Event Hubs-compatible endpoint: azure-eventhub's
EventHubConsumerClient (each start position, with and without a checkpoint store), a uamqp receiver that
opens the hub's own AMQP endpoint and follows its redirect (what `az iot hub monitor-events` does), and
`iothub-service monitor`, reading a Python-SDK device and a raw paho MQTT device."""

from __future__ import annotations

import datetime as dt
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from emulator.hub.telemetry import partition_of
from emulator.testing import Emulator
from hubsettings import build_token, wellknown

from .support import unique_device_id, wait_for

pytestmark = pytest.mark.e2e
PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEY = wellknown.POLICIES["iothubowner"][0]


@pytest.fixture(scope="module")
def hub():
    with Emulator(consumer_groups=("analytics",), telemetry_capacity=5000) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_global_ca_overrides(monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)


def consumer(hub, group: str = "$Default", **options):
    from azure.eventhub import EventHubConsumerClient
    return EventHubConsumerClient.from_connection_string(hub.event_hub_connection_string, consumer_group=group,
                                                         connection_verify=hub.ca_file, **options)


def read(client, count: int, *, device_id: str | None = None, timeout: float = 30, **receive_options) -> list:
    """The first `count` events (of `device_id` when given), then the client is closed."""
    events: list = []
    done = threading.Event()

    def on_event(context, event):
        if event is None or done.is_set():
            return
        if device_id is None or event.system_properties.get(b"iothub-connection-device-id") == device_id.encode():
            events.append(event)
            if context is not None and getattr(client, "_checkpoint_store", None) is not None:
                context.update_checkpoint(event)
        if len(events) >= count:
            done.set()
            client.close()

    timer = threading.Timer(timeout, client.close)
    timer.start()
    try:
        client.receive(on_event=on_event, max_wait_time=1, **receive_options)
    finally:
        timer.cancel()
    return events


def send_from_python_sdk(hub, device, bodies: list[str]) -> None:
    from azure.iot.device import IoTHubDeviceClient, Message
    client = IoTHubDeviceClient.create_from_connection_string(device.connection_string,
                                                              server_verification_cert=hub.ca_pem)
    client.connect()
    try:
        for n, body in enumerate(bodies):
            message = Message(body, message_id=f"mid-{n}", content_encoding="utf-8",
                              content_type="application/json")
            message.correlation_id = f"corr-{n}"
            message.custom_properties["temperatureAlert"] = "true" if n % 2 else "false"
            client.send_message(message)
    finally:
        client.shutdown()


def test_python_sdk_telemetry_through_event_hub_consumer_client_with_iothub_properties(hub):
    device = hub.create_device(unique_device_id("eh-sdk"))
    send_from_python_sdk(hub, device, ['{"temperature":21}', '{"temperature":22}'])
    client = consumer(hub)
    assert client.get_partition_ids() == ["0", "1", "2", "3"]
    events = read(client, 2, device_id=device.device_id, starting_position="-1")
    assert [e.body_as_json() for e in events] == [{"temperature": 21}, {"temperature": 22}]
    first = events[0]
    system = first.system_properties
    generation = hub.call(lambda: hub.hub.get_device(device.device_id).generation_id)
    assert system[b"iothub-connection-device-id"] == device.device_id.encode()
    assert json.loads(system[b"iothub-connection-auth-method"]) == {
        "scope": "device", "type": "sas", "issuer": "iothub", "acceptingIpFilterRule": None}
    assert system[b"iothub-connection-auth-generation-id"] == generation.encode()
    assert system[b"iothub-message-source"] == b"Telemetry"
    assert isinstance(system[b"iothub-enqueuedtime"], int)
    assert (system[b"message-id"], system[b"correlation-id"]) == (b"mid-0", b"corr-0")
    assert (system[b"content-type"], system[b"content-encoding"]) == (b"application/json", b"utf-8")
    assert first.properties == {b"temperatureAlert": b"false"}
    assert events[1].properties == {b"temperatureAlert": b"true"}
    # A device's messages are in one partition, in order, with consecutive sequence numbers.
    assert {e.sequence_number for e in events} == {events[0].sequence_number, events[0].sequence_number + 1}
    properties = consumer(hub).get_partition_properties(str(partition_of(device.device_id)))
    assert properties["last_enqueued_sequence_number"] >= events[1].sequence_number
    assert not properties["is_empty"]


def enqueue(hub, device_id: str, bodies: list[str]) -> None:
    for body in bodies:
        hub.call(lambda b=body: hub.hub.receive_telemetry(device_id, b.encode()))


def bodies_of(events) -> list[str]:
    return [e.body_as_str() for e in events]


def test_each_start_position(hub):
    device_id = unique_device_id("eh-start")
    partition = str(partition_of(device_id))
    enqueue(hub, device_id, ["a", "b", "c"])
    everything = read(consumer(hub), 3, device_id=device_id, partition_id=partition, starting_position="-1")
    assert bodies_of(everything) == ["a", "b", "c"]
    a, b, _ = everything

    def from_(position, inclusive=False, count=2):
        return bodies_of(read(consumer(hub), count, device_id=device_id, partition_id=partition,
                              starting_position=position, starting_position_inclusive=inclusive))

    assert from_(a.sequence_number) == ["b", "c"]
    assert from_(b.sequence_number, inclusive=True) == ["b", "c"]
    assert from_(str(a.offset)) == ["b", "c"]
    assert from_(str(b.offset), inclusive=True) == ["b", "c"]
    assert from_(b.enqueued_time, inclusive=True, count=1)[0] in ("b", "a")  # same millisecond as "a" possible

    latest: list = []
    client = consumer(hub)
    reader = threading.Thread(target=lambda: latest.extend(read(client, 1, device_id=device_id,
                                                                 partition_id=partition, starting_position="@latest")))
    reader.start()
    wait_for(lambda: _partition_has_reader(hub, partition), what="the @latest reader to attach")
    enqueue(hub, device_id, ["d"])
    reader.join(40)
    assert bodies_of(latest) == ["d"]


def _partition_has_reader(hub, partition: str) -> bool:
    return hub.call(lambda: bool(hub.hub.telemetry.partition(partition)._listeners))


def test_another_consumer_group_and_a_checkpoint_store(hub):
    from azure.eventhub import CheckpointStore

    class MemoryCheckpointStore(CheckpointStore):
        def __init__(self):
            self.ownership: dict = {}
            self.checkpoints: dict = {}

        def list_ownership(self, namespace, eventhub, group, **kwargs):
            return list(self.ownership.values())

        def claim_ownership(self, ownership_list, **kwargs):
            claimed = []
            for item in ownership_list:
                item = dict(item, etag=str(time.time()), last_modified_time=time.time())
                self.ownership[item["partition_id"]] = item
                claimed.append(item)
            return claimed

        def update_checkpoint(self, checkpoint, **kwargs):
            self.checkpoints[checkpoint["partition_id"]] = checkpoint

        def list_checkpoints(self, namespace, eventhub, group, **kwargs):
            return list(self.checkpoints.values())

    device_id = unique_device_id("eh-ckpt")
    enqueue(hub, device_id, ["one", "two"])
    store = MemoryCheckpointStore()
    assert bodies_of(read(consumer(hub, "analytics", checkpoint_store=store), 2, device_id=device_id,
                          starting_position="-1")) == ["one", "two"]
    assert str(partition_of(device_id)) in store.checkpoints
    enqueue(hub, device_id, ["three"])
    # The checkpoint wins over the starting position: only what came after it.
    assert bodies_of(read(consumer(hub, "analytics", checkpoint_store=store), 1, device_id=device_id,
                          starting_position="-1")) == ["three"]


def test_uamqp_receiver_follows_the_redirect_of_the_hubs_own_endpoint(hub):
    """As Microsoft's docs sample and the az extension: SASL PLAIN on the hub's endpoint, a receiver on
    messages/events/..., the amqp:link:redirect, then the Event Hubs address with a SAS token."""
    import uamqp
    from uamqp import authentication, errors
    from uamqp.address import Source

    device_id = unique_device_id("eh-uamqp")
    enqueue(hub, device_id, ["via redirect"])
    host, partition = hub.host_name, partition_of(device_id)
    token = build_token(host, KEY, policy="iothubowner")
    auth = authentication.SASLPlain(host, f"iothubowner@sas.root.{host.split('.')[0]}", token, verify=hub.ca_file)
    client = uamqp.ReceiveClient(f"amqps://{host}/messages/events/ConsumerGroups/$Default/Partitions/{partition}",
                                 auth=auth, timeout=10000, prefetch=1)
    with pytest.raises(errors.LinkRedirect) as redirect:
        client.receive_message_batch(max_batch_size=1)
    client.close()
    address = redirect.value.address.decode()
    assert redirect.value.hostname.decode() == host and redirect.value.port == 5671
    assert address.endswith(f"/ConsumerGroups/$Default/Partitions/{partition}")
    auth = authentication.SASTokenAuth.from_shared_access_key(address, "iothubowner", KEY, verify=hub.ca_file)
    source = Source(address)
    source.set_filter(b"amqp.annotation.x-opt-offset > '-1'")
    client = uamqp.ReceiveClient(source, auth=auth, timeout=10000, prefetch=50)
    try:
        got = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            got += [m for m in client.receive_message_batch(max_batch_size=50, timeout=2000)
                    if m.annotations.get(b"iothub-connection-device-id") == device_id.encode()]
    finally:
        client.close()
    assert b"".join(got[0].get_data()) == b"via redirect"
    assert got[0].annotations[b"iothub-message-source"] == b"Telemetry"


def run_monitor(hub, *args: str, policy: str = "iothubowner", timeout: float = 90) -> subprocess.CompletedProcess:
    key = wellknown.POLICIES[policy][0]
    connection_string = hub.service_connection_string.replace(
        "SharedAccessKeyName=iothubowner", f"SharedAccessKeyName={policy}").replace(KEY, key)
    env = dict(os.environ, IOTHUB_CONNECTION_STRING=connection_string, IOTHUB_CA_FILE=hub.ca_file)
    return subprocess.run([sys.executable, "-m", "service", "monitor", *args], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_monitor_reads_a_raw_paho_device_with_properties(hub):
    import paho.mqtt.client as mqtt
    device = hub.create_device(unique_device_id("eh-paho"))
    client = mqtt.Client(client_id=device.device_id, protocol=mqtt.MQTTv311)
    client.username_pw_set(f"{hub.host_name}/{device.device_id}/?api-version=2021-04-12",
                           build_token(f"{hub.host_name}/devices/{device.device_id}", device.primary_key))
    client.tls_set(ca_certs=hub.ca_file, cert_reqs=ssl.CERT_REQUIRED)
    client.connect(hub.address, wellknown.MQTT_PORT)
    client.loop_start()
    try:
        topic = f"devices/{device.device_id}/messages/events/%24.mid=paho-1&%24.ct=application%2Fjson&%24.ce=utf-8&zone=north"
        client.publish(topic, b'{"humidity":40}', qos=1).wait_for_publish(15)
        client.publish(f"devices/{device.device_id}/messages/events/", b"plain text", qos=1).wait_for_publish(15)
    finally:
        client.loop_stop()
        client.disconnect()
    result = run_monitor(hub, device.device_id, "--start", "earliest", "--count", "2", "--timeout", "60",
                         "--json", "--properties")
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["deviceId"] == device.device_id and first["body"] == {"humidity": 40}
    assert first["properties"] == {"zone": "north"}
    assert first["systemProperties"]["message-id"] == "paho-1"
    assert first["systemProperties"]["content-type"] == "application/json"
    assert first["systemProperties"]["iothub-message-source"] == "Telemetry"
    assert second["body"] == "plain text"
    text = run_monitor(hub, device.device_id, "--start", "earliest", "--count", "1", "--timeout", "60")
    assert text.returncode == 0 and text.stdout.split()[1:] == [device.device_id, '{"humidity":40}']


def test_cli_monitor_catches_up_on_a_backlog_in_order(hub):
    """Thousands of messages waiting (a busy device, or --start earliest on a used hub): monitor takes them
    in batches. One event per partition visit read about 30 a second, so this backlog took minutes."""
    device = hub.create_device(unique_device_id("eh-backlog"))
    backlog = 3000

    def send_backlog() -> None:
        for n in range(backlog):
            hub.server.hub.receive_telemetry(device.device_id, json.dumps({"n": n}).encode())
    hub.call(send_backlog)
    result = run_monitor(hub, device.device_id, "--start", "earliest", "--count", str(backlog),
                         "--timeout", "60", "--json")
    assert result.returncode == 0, result.stderr[-500:]
    assert [json.loads(line)["body"]["n"] for line in result.stdout.splitlines()] == list(range(backlog))


def test_cli_monitor_reads_the_python_sdk_device_from_a_time(hub):
    device = hub.create_device(unique_device_id("eh-cli-sdk"))
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)).isoformat()
    send_from_python_sdk(hub, device, ['{"n":1}'])
    result = run_monitor(hub, device.device_id, "--start", since, "--count", "1", "--timeout", "60", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["body"] == {"n": 1}


def test_cli_monitor_one_line_errors(hub):
    bad_start = run_monitor(hub, "--start", "yesterday")
    assert bad_start.returncode == 2 and "--start takes earliest, latest" in bad_start.stderr
    no_group = run_monitor(hub, "--consumer-group", "nope", "--timeout", "5")
    assert no_group.returncode == 4, no_group.stderr
    lines = no_group.stderr.strip().splitlines()
    assert lines[0].startswith("Using IoT hub") and lines[1:] == [lines[-1]] and lines[-1].startswith("Error: ")
    assert "consumer group 'nope' not found" in no_group.stderr
    no_rights = run_monitor(hub, "--timeout", "5", policy="registryRead")
    assert no_rights.returncode == 11, no_rights.stderr
    assert "ServiceConnect" in no_rights.stderr and "Traceback" not in no_rights.stderr


def test_a_stalled_consumer_holds_back_neither_devices_nor_other_consumers(hub):
    """A receiver that grants credit 1 and never more gets one message; devices keep sending and a
    second consumer reads all of it."""
    from proton import SSLDomain
    from proton.utils import BlockingConnection

    device_id = unique_device_id("eh-stall")
    partition = partition_of(device_id)
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    domain.set_trusted_ca_db(hub.ca_file)
    domain.set_peer_authentication(SSLDomain.VERIFY_PEER)  # the CA is checked; the name is an IP here
    token = build_token(hub.host_name, KEY, policy="iothubowner")
    connection = BlockingConnection(f"amqps://{hub.address}:5671", ssl_domain=domain, sasl_enabled=True,
                                    allowed_mechs="PLAIN", user=f"iothubowner@sas.root.{hub.host_name}",
                                    password=token, virtual_host=hub.host_name, timeout=20)
    name = hub.event_hub_connection_string.rsplit("EntityPath=", 1)[1]
    stalled = connection.create_receiver(f"{name}/ConsumerGroups/$Default/Partitions/{partition}", credit=1)
    try:
        enqueue(hub, device_id, [f"m{n}" for n in range(1000)])
        assert hub.call(lambda: hub.hub.telemetry.partition(str(partition)).next_sequence_number) >= 1000
        events = read(consumer(hub), 1000, device_id=device_id, partition_id=str(partition),
                      starting_position="-1", timeout=60)
        assert len(events) == 1000
        # The hub sent the stalled receiver only what its credit allowed: its reader is still at 1.
        readers = hub.call(lambda: [listener.__self__.position for listener in
                                    hub.hub.telemetry.partition(str(partition))._listeners])
        assert readers == [1]
        first = hub.call(lambda: hub.hub.telemetry.partition(str(partition)).messages()[0].body)
        assert bytes(stalled.receive(timeout=10).body) == first  # the partition's oldest (maybe another device's)
    finally:
        connection.close()
