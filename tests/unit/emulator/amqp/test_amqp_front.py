"""The AMQP front on a real TLS socket, driven by a real proton client (Apache Qpid): SASL, $cbs, sending
cloud-to-device messages, IoT Hub's rejections, feedback, and bad input that must not hurt anyone else."""

import json
import socket
import ssl
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from proton import SSL, Data, Delivery, Described, Message, SSLDomain, symbol, ulong
from proton.utils import BlockingConnection, LinkDetached

from emulator.loopback import free_loopback_address
from emulator.server import EmulatorConfig, ThreadedEmulator
from hubsettings import build_token, wellknown

AMQP_PORTS = (wellknown.MQTT_PORT, wellknown.REST_PORT, 5671)

if not SSL.present():
    pytest.skip("this python-qpid-proton build has no TLS (it was compiled without OpenSSL headers: install "
                "libssl-dev, then reinstall python-qpid-proton)", allow_module_level=True)


@pytest.fixture(scope="module")
def emulator():
    address = free_loopback_address(AMQP_PORTS, fall_back_to_127_0_0_1=True)
    with ThreadedEmulator(EmulatorConfig(address=address, in_memory=True, write_discovery=False)) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def empty_queues(emulator):
    yield
    emulator.call(lambda: [emulator.hub.c2d.purge(d.device_id) for d in emulator.hub.list_devices()])


def policy_token(emulator, policy="iothubowner", key=None, ttl=3600):
    key = key or wellknown.POLICIES[policy][0]
    return build_token(emulator.server.host_name, key, policy=policy, ttl=ttl)


def tls(emulator) -> SSLDomain:
    ca_file = emulator.server.info().ca_file
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    domain.set_trusted_ca_db(ca_file)
    # The chain is checked; proton matches peer names against DNS names only, and the throwaway
    # emulator's name is an IP address (an IP SAN in its certificate).
    domain.set_peer_authentication(SSLDomain.VERIFY_PEER, ca_file)
    return domain


def connect(emulator, *, mechanism: str | None = "PLAIN", policy="iothubowner", token=None) -> BlockingConnection:
    url = f"amqps://{emulator.server.config.address}:{emulator.server.amqp_port}"
    options = {"allowed_mechs": mechanism, "sasl_enabled": True} if mechanism else {"sasl_enabled": False}
    if mechanism == "PLAIN":
        options.update(user=f"{policy}@sas.root.{emulator.server.host_name}",
                       password=token or policy_token(emulator, policy))
    return BlockingConnection(url, timeout=15, ssl_domain=tls(emulator), **options)


@contextmanager
def opened(emulator, **options) -> Iterator[BlockingConnection]:
    connection = connect(emulator, **options)
    try:
        yield connection
    finally:
        connection.close()


def c2d(device_id="myDeviceId", body=b"hello", **fields) -> Message:
    message = Message(body=body, inferred=True, address=f"/devices/{device_id}/messages/devicebound",
                      id=fields.pop("id", str(uuid.uuid4())), **fields)
    return message


def send(connection, message) -> Delivery:
    sender = connection.create_sender("/messages/devicebound")
    try:
        return sender.send(message, error_states=[])
    finally:
        sender.close()


def depth(emulator, device_id="myDeviceId") -> int:
    return emulator.call(lambda: emulator.hub.c2d.depth(device_id))


def put_token(connection, token, audience) -> dict:
    """A $cbs put-token as uamqp and rhea send it; returns the answer's application properties."""
    replies = connection.create_receiver("$cbs", credit=1)
    requests = connection.create_sender("$cbs")
    request_id = str(uuid.uuid4())
    requests.send(Message(id=request_id, reply_to="cbs", body=token, properties={
        "operation": "put-token", "type": "servicebus.windows.net:sastoken", "name": audience}))
    answer = replies.receive(timeout=10)
    assert answer.correlation_id == request_id
    return answer.properties


def test_plain_sender_queues_a_message_with_its_properties(emulator):
    with_props = c2d(body=b'{"t":1}', id="m-1", correlation_id="c-1", user_id=b"ops",
                     content_type=symbol("application/json"), content_encoding=symbol("utf-8"),
                     properties={"k": "v", "iothub-ack": "full"}, expiry_time=4_102_444_800)
    with opened(emulator) as connection:
        assert send(connection, with_props).remote_state == Delivery.ACCEPTED
    [queued] = emulator.call(lambda: list(emulator.hub.c2d.take_for_delivery("myDeviceId")))
    assert (queued.body, queued.message_id, queued.correlation_id, queued.user_id, queued.content_type,
            queued.content_encoding, queued.properties, queued.ack) == \
        (b'{"t":1}', "m-1", "c-1", "ops", "application/json", "utf-8", {"k": "v"}, "full")


def test_anonymous_client_with_a_cbs_token_may_send(emulator):
    with opened(emulator, mechanism="ANONYMOUS") as connection:
        answer = put_token(connection, policy_token(emulator, "service"),
                           f"https://{emulator.server.host_name}")
        assert answer["status-code"] == 200
        assert send(connection, c2d()).remote_state == Delivery.ACCEPTED
    assert depth(emulator) == 1


def test_client_without_sasl_puts_a_token_and_reads_feedback_by_node_sdk_names(emulator):
    """What Node's azure-iothub does: no SASL layer at all, then $cbs, and `/messages/serviceBound/feedback`."""
    with opened(emulator, mechanism=None) as connection:
        assert put_token(connection, policy_token(emulator), f"https://{emulator.server.host_name}")[
            "status-code"] == 200
        connection.create_receiver("/messages/serviceBound/feedback", credit=1).close()
        assert send(connection, c2d()).remote_state == Delivery.ACCEPTED


def test_anonymous_client_without_a_token_cannot_attach(emulator):
    with opened(emulator, mechanism="ANONYMOUS") as connection:
        with pytest.raises(LinkDetached) as refused:
            connection.create_sender("/messages/devicebound")
        assert "unauthorized-access" in str(refused.value)


@pytest.mark.parametrize("token_of", [
    lambda e: policy_token(e, "registryRead"),  # no ServiceConnect right
    lambda e: policy_token(e, "iothubowner", key=wellknown.POLICIES["service"][0]),  # wrong key
    lambda e: policy_token(e, ttl=-10),  # expired
    lambda e: "SharedAccessSignature garbage",
])
def test_bad_cbs_tokens_get_401_and_no_access(emulator, token_of):
    with opened(emulator, mechanism="ANONYMOUS") as connection:
        answer = put_token(connection, token_of(emulator), f"https://{emulator.server.host_name}")
        assert answer["status-code"] == 401 and answer["status-description"]
        with pytest.raises(LinkDetached):
            connection.create_sender("/messages/devicebound")


def test_plain_with_a_bad_token_fails_sasl(emulator):
    from proton import ConnectionException
    with pytest.raises(ConnectionException):
        connect(emulator, policy="registryRead").create_sender("/messages/devicebound")


@pytest.mark.parametrize("message, condition", [
    (lambda: c2d("nobody"), "amqp:not-found"),
    (lambda: c2d(body=b"x" * (64 * 1024 + 1)), "amqp:link:message-size-exceeded"),
    (lambda: Message(body=b"x", inferred=True, address="/devices/myDeviceId/messages/events"), "amqp:invalid-field"),
    (lambda: c2d(properties={"iothub-ack": "sometimes"}), "amqp:invalid-field"),
])
def test_refused_messages_carry_iot_hubs_condition_and_nothing_is_queued(emulator, message, condition):
    with opened(emulator) as connection:
        delivery = send(connection, message())
        assert delivery.remote_state == Delivery.REJECTED
        assert delivery.remote.condition.name == condition
        assert delivery.remote.condition.description.startswith("ErrorCode:")
    assert depth(emulator) == 0


def test_full_queue_is_resource_limit_exceeded(emulator):
    with opened(emulator) as connection:
        sender = connection.create_sender("/messages/devicebound")
        for _ in range(50):
            assert sender.send(c2d(), error_states=[]).remote_state == Delivery.ACCEPTED
        refused = sender.send(c2d(), error_states=[])
        assert refused.remote_state == Delivery.REJECTED
        assert refused.remote.condition.name == "amqp:resource-limit-exceeded"
        assert "DeviceMaximumQueueDepthExceeded" in refused.remote.condition.description
    assert depth(emulator) == 50


def test_unknown_node_is_not_found(emulator):
    with opened(emulator) as connection:
        with pytest.raises(LinkDetached) as refused:
            connection.create_receiver("/messages/nowhere")
        assert "not-found" in str(refused.value)


# ---- the Event Hubs-compatible endpoint ----------------------------------------------------------
def hub_name(emulator) -> str:
    return emulator.server.host_name  # an IP here: the entity path is the whole name


def test_messages_events_redirects_to_the_event_hubs_address_with_iothubs_info(emulator):
    with opened(emulator) as connection:
        with pytest.raises(LinkDetached) as redirected:
            connection.create_receiver("amqps://x/messages/events/ConsumerGroups/$Default/Partitions/2")
    condition = redirected.value.link.remote_condition
    host = emulator.server.host_name
    assert condition.name == "amqp:link:redirect"
    assert condition.info == {symbol("hostname"): host, symbol("network-host"): host,
                              symbol("port"): emulator.server.amqp_port,
                              symbol("address"): f"amqps://{host}:{emulator.server.amqp_port}/{hub_name(emulator)}"
                                                 "/ConsumerGroups/$Default/Partitions/2"}


def test_no_redirect_without_service_connect(emulator):
    with opened(emulator, mechanism="ANONYMOUS") as connection:
        put_token(connection, policy_token(emulator, "registryRead"), f"https://{emulator.server.host_name}")
        with pytest.raises(LinkDetached) as refused:
            connection.create_receiver("/messages/events/$management")
    assert "unauthorized-access" in str(refused.value)


def selector(text: str) -> dict:
    return {symbol("apache.org:selector-filter:string"): Described(ulong(0x0000468C00000004), text)}


def test_a_partition_reader_starts_where_its_filter_says(emulator):
    from emulator.hub.telemetry import partition_of
    device = f"eh-{uuid.uuid4().hex[:8]}"
    for n in range(3):
        emulator.call(lambda n=n: emulator.hub.receive_telemetry(device, f"m{n}".encode()))
    sequence = emulator.call(lambda: emulator.hub.telemetry.messages(device)[1].sequence_number)
    address = f"{hub_name(emulator)}/ConsumerGroups/$Default/Partitions/{partition_of(device)}"
    with opened(emulator) as connection:
        receiver = connection.create_receiver(address, credit=10, options=_Filter(selector(
            f"amqp.annotation.x-opt-sequence-number >= '{sequence}'")))
        got = [receiver.receive(timeout=10) for _ in range(2)]
    assert [m.body for m in got] == [b"m1", b"m2"]
    assert got[0].annotations["iothub-connection-device-id"] == device


class _Filter:
    """A proton LinkOption setting the source filter."""

    def __init__(self, filters: dict):
        self.filters = filters

    def apply(self, link):
        link.source.filter.put_object(self.filters)

    def test(self, link):
        return link.is_receiver


@pytest.mark.parametrize(("address", "problem"), [
    ("{hub}/ConsumerGroups/nope/Partitions/0", "consumer group 'nope' does not exist"),
    ("{hub}/ConsumerGroups/$Default/Partitions/9", "partition '9' does not exist"),
])
def test_unknown_consumer_group_or_partition_is_not_found(emulator, address, problem):
    with opened(emulator) as connection:
        with pytest.raises(LinkDetached) as refused:
            connection.create_receiver(address.format(hub=hub_name(emulator)))
    assert "amqp:not-found" in str(refused.value) and problem in str(refused.value)


def test_a_bad_start_filter_is_invalid_field(emulator):
    with opened(emulator) as connection:
        with pytest.raises(LinkDetached) as refused:
            connection.create_receiver(f"{hub_name(emulator)}/ConsumerGroups/$Default/Partitions/0",
                                       options=_Filter(selector("amqp.annotation.x-opt-offset > 'soon'")))
    assert "amqp:invalid-field" in str(refused.value)


def management_request(links, **properties) -> Message:
    replies, requests = links
    request_id = str(uuid.uuid4())
    requests.send(Message(id=request_id, reply_to="$management", properties=properties))
    answer = replies.receive(timeout=10)
    assert answer.correlation_id == request_id
    return answer


def test_management_reads_the_event_hub_and_a_partition(emulator):
    name = hub_name(emulator)
    with opened(emulator) as connection:
        links = connection.create_receiver("$management", credit=3), connection.create_sender("$management")
        hub = management_request(links, operation="READ", name=name, type="com.microsoft:eventhub")
        partition = management_request(links, operation="READ", name=name,
                                       type="com.microsoft:partition", partition="1")
        missing = management_request(links, operation="READ", name=name,
                                     type="com.microsoft:partition", partition="7")
    assert hub.properties["status-code"] == 200
    assert hub.body["partition_ids"] == ["0", "1", "2", "3"] and hub.body["partition_count"] == 4
    assert partition.body["partition"] == "1" and "begin_sequence_number" in partition.body
    assert missing.properties["status-code"] == 404


def test_feedback_arrives_as_a_json_batch_and_goes_once_accepted(emulator):
    def complete_one() -> str:
        sent = emulator.hub.send_cloud_message("myDeviceId", b"x", ack="positive")
        emulator.hub.c2d.take_for_delivery("myDeviceId")
        emulator.hub.c2d.complete("myDeviceId", sent.lock_token)
        return sent.message_id

    first = emulator.call(complete_one)
    with opened(emulator) as connection:
        receiver = connection.create_receiver("/messages/servicebound/feedback", credit=5)
        batch = receiver.receive(timeout=10)
        assert batch.content_type == "application/vnd.microsoft.iothub.feedback.json"
        records = records_of(batch)
        assert [(r["originalMessageId"], r["statusCode"]) for r in records] == [(first, "Success")]
        receiver.accept()
        second = emulator.call(complete_one)  # pushed to the open link as it happens
        assert records_of(receiver.receive(timeout=10))[0]["originalMessageId"] == second
        receiver.release()  # not taken: offered again
        assert records_of(receiver.receive(timeout=10))[0]["originalMessageId"] == second
        receiver.accept()
    assert emulator.call(lambda: emulator.hub.c2d.feedback_waiting()) == 0


def assert_still_serving(emulator) -> None:
    """After one client's bad input, another client is served as before."""
    with opened(emulator) as connection:
        assert send(connection, c2d()).remote_state == Delivery.ACCEPTED


def records_of(message: Message) -> list:
    return json.loads(bytes(message.body))  # copy while the message (which owns the buffer) lives


def _raw_tls(emulator) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=emulator.server.info().ca_file)
    raw = socket.create_connection((emulator.server.config.address, emulator.server.amqp_port), timeout=10)
    return context.wrap_socket(raw, server_hostname=emulator.server.host_name)


def _read_until_closed(sock) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not AMQP
    b"AMQP\x01\x01\x00\x00",  # a protocol id that is neither AMQP nor SASL (1: TLS inside)
    b"AMQP\x00\x01\x00\x00" + b"\x00" * 32,  # AMQP without SASL, then garbage
    b"AMQP\x03\x01\x00\x00" + b"\xff\xff\xff\xff\x02\x01\x00\x00",  # absurd SASL frame size
    b"AMQP\x03\x01\x00\x00\x00\x00\x00\x10\x02\x01\x00\x00\x00S\x41\x45\xde\xad\xbe\xef",  # bad sasl-init
])
def test_garbage_closes_that_connection_only(emulator, garbage):
    with _raw_tls(emulator) as sock:
        sock.sendall(garbage)
        reply = _read_until_closed(sock)
    assert reply == b"" or reply.startswith(b"AMQP")  # at most our protocol header, then closed
    assert_still_serving(emulator)


@pytest.mark.parametrize("frame", [
    b"\x00\x00\x00\x0c\x02\x00\x00\x00\xde\xad\xbe\xef",  # a body that is no performative
    b"\x00\x00\x00\x0c\x02\x00\x00\x00\x00\x53\x77\x45",  # an unknown performative
    b"\x00\x00\x00\x04\x02\x00\x00\x00",  # a frame shorter than its own header
])
def test_malformed_amqp_frames_after_sasl_close_that_connection_only(emulator, frame):
    init = Data()
    init.put_object(Described(ulong(0x41), [symbol("ANONYMOUS")]))
    body = bytes(init.encode())
    sasl_init = (8 + len(body)).to_bytes(4, "big") + b"\x02\x01\x00\x00" + body
    with _raw_tls(emulator) as sock:
        sock.sendall(b"AMQP\x03\x01\x00\x00" + sasl_init + b"AMQP\x00\x01\x00\x00" + frame)
        reply = _read_until_closed(sock)  # the emulator closes it (a hang would time out here)
    assert reply.startswith(b"AMQP\x03\x01\x00\x00") and b"AMQP\x00\x01\x00\x00" in reply
    assert_still_serving(emulator)
