"""The device front without sockets: a real session state machine per fake client, driven by encoded
packets exactly as the device SDK sends them (see the wire facts)."""

import json

import pytest

from emulator.hub import FakeClock, Hub
from mqttcodec import (Connack, Connect, Disconnect, PacketReader, Puback, Publish, Suback, Subscribe,
                                 encode)
from emulator.mqtt.device_front import DeviceFront
from emulator.mqtt.session import ServerConnection
from hubsettings import build_token, derive_device_key, wellknown

NOW = 1_700_000_000
KEY = "8cc0Q0uyQZXpjwRZmcbS7ylk+eo0FLauFovl2gd1Vbc="
KEY2 = "GE5K8DIILj1gEg6WNcmgqJyQsWkphPUMZ9ZOESClIbs="


class FakeClient:
    """One client connection: the device front's side is a real ServerConnection; we play the client."""

    def __init__(self, front, peer="test"):
        self.front = front
        self.peer = peer
        self.connection = ServerConnection(now=lambda: 0.0)
        self.reader = PacketReader()
        self.received = []
        self.closed = False

    def flush(self):
        self.received += self.reader.feed(self.connection.data_to_send())
        if self.connection.state == "closed" and not self.closed:
            self.closed = True
            self.front.client_closed(self)

    def send(self, *packets):
        for packet in packets:
            self.front.handle_events(self, self.connection.receive_data(encode(packet)))
            while self.connection.accepted_with_pending_input:
                self.front.handle_events(self, self.connection.receive_data(b""))
        self.flush()

    def take(self):
        packets, self.received = self.received, []
        return packets

    def publishes(self):
        return [p for p in self.take() if isinstance(p, Publish)]


@pytest.fixture
def clock():
    return FakeClock(NOW)


@pytest.fixture
def hub(clock):
    hub = Hub("localhost", clock=clock)
    hub.register_well_known()
    hub.create_device("d1", primary_key=KEY)
    hub.create_device("d2", primary_key=KEY2)
    return hub


@pytest.fixture
def front(hub):
    return DeviceFront(hub)


def hub_connect(device_id="d1", key=KEY, *, client_id=None, host="localhost", sr_device=None, ttl=3600,
                clean_session=False):
    token = build_token(f"{host}/devices/{sr_device or device_id}", key, ttl=ttl, now=NOW)
    username = f"localhost/{device_id}/?api-version=2019-10-01&DeviceClientType=python"
    return Connect(client_id if client_id is not None else device_id, username, token.encode(),
                   clean_session=clean_session)


def connected(front, device_id="d1", key=KEY, session_present=False, *, clean_session=False):
    client = FakeClient(front)
    client.send(hub_connect(device_id, key, clean_session=clean_session))
    assert client.take() == [Connack(session_present, 0)]
    return client


def subscribe(client, *topic_filters, packet_id=100):
    """Subscribe as the device SDK does when a handler is set; returns the SUBACK codes."""
    client.send(Subscribe(packet_id, tuple((f, 1) for f in topic_filters)))
    [suback] = [p for p in client.take() if isinstance(p, Suback)]
    return suback.return_codes


METHODS, DESIRED = "$iothub/methods/POST/#", "$iothub/twin/PATCH/properties/desired/#"


def test_good_token_is_accepted_and_marks_the_device_connected(front, hub):
    connected(front)
    assert hub.get_device("d1").connection_state == "Connected"


@pytest.mark.parametrize("connect", [
    hub_connect(key=KEY2),  # another device's key
    hub_connect(ttl=-1),  # expired
    hub_connect(sr_device="d2"),  # sr names another device
    hub_connect(host="otherhub"),  # sr names another hub
    hub_connect(client_id="d2"),  # username device id != client id
    hub_connect("ghost"),  # no such device
    Connect("d1", "localhost/d1/?api-version=2019-10-01", b"not a token"),
    Connect("d1", None, None),
], ids=["wrong-key", "expired", "other-device", "other-hub", "client-id", "unknown", "garbage", "anonymous"])
def test_bad_credentials_get_connack_5(front, hub, connect):
    client = FakeClient(front)
    client.send(connect)
    assert client.take() == [Connack(False, 5)]
    assert client.connection.state == "closed"
    assert not hub.is_online("d1")


def test_disabled_device_is_refused(front, hub):
    hub.update_device("d1", status="disabled")
    client = FakeClient(front)
    client.send(hub_connect())
    assert client.take() == [Connack(False, 5)]


def test_host_name_with_port_in_sr_is_accepted(front):
    client = FakeClient(front)
    client.send(hub_connect(host="localhost:8883"))
    assert client.take() == [Connack(False, 0)]


def test_twin_get_and_reported_patch_without_any_subscription(front):
    client = connected(front)
    client.send(Publish("$iothub/twin/GET/?$rid=r1", b" ", 1, 1))
    client.send(Publish("$iothub/twin/PATCH/properties/reported/?$rid=r2", b'{"fw": "1.0"}', 1, 2))
    packets = client.take()
    assert Puback(1) in packets and Puback(2) in packets
    replies = [p for p in packets if isinstance(p, Publish)]
    assert replies[0].topic == "$iothub/twin/res/200/?$rid=r1"
    assert json.loads(replies[0].payload) == {"desired": {"$version": 1}, "reported": {"$version": 1}}
    assert replies[1].topic == "$iothub/twin/res/204/?$rid=r2&$version=2"
    assert replies[1].payload == b""


def test_reported_patches_reusing_a_rid_are_each_applied_and_answered(front, hub):
    """$rid is the client's correlation value (the C SDK restarts at 1, Microsoft's samples use constants)."""
    client = connected(front)
    client.send(Publish("$iothub/twin/PATCH/properties/reported/?$rid=1", b'{"n": 1}', 1, 7))
    client.send(Publish("$iothub/twin/PATCH/properties/reported/?$rid=1", b'{"m": 2}', 1, 8))
    assert [p.topic for p in client.publishes()] == ["$iothub/twin/res/204/?$rid=1&$version=2",
                                                   "$iothub/twin/res/204/?$rid=1&$version=3"]
    reported = hub.device_twin("d1")["reported"]
    assert (reported["n"], reported["m"], reported["$version"]) == (1, 2, 3)


def test_a_twin_get_reusing_a_rid_returns_the_current_document(front, hub):
    client = connected(front)
    client.send(Publish("$iothub/twin/GET/?$rid=1", b" ", 1, 1))
    hub.patch_desired("d1", {"temp": 21})
    client.take()
    client.send(Publish("$iothub/twin/GET/?$rid=1", b" ", 1, 2))
    [reply] = client.publishes()
    assert json.loads(reply.payload)["desired"] == {"temp": 21, "$version": 2}


def test_bad_reported_patch_gets_a_400_reply_not_silence(front):
    client = connected(front)
    client.send(Publish("$iothub/twin/PATCH/properties/reported/?$rid=r1", b"{not json", 1, 1))
    assert client.publishes()[0].topic == "$iothub/twin/res/400/?$rid=r1"


def test_desired_patch_reaches_the_device_with_version_in_the_json(front, hub):
    client = connected(front)
    subscribe(client, DESIRED)
    hub.patch_desired("d1", {"temp": 21})
    [push] = client.publishes()
    assert push.topic == "$iothub/twin/PATCH/properties/desired/?$version=2"
    assert json.loads(push.payload) == {"temp": 21, "$version": 2}


def test_method_request_and_response_are_correlated(front, hub):
    client = connected(front)
    client.send(Subscribe(1, (("$iothub/methods/POST/#", 1),)))
    client.take()
    call = hub.start_method("d1", "reboot", {"delay": 5})
    [request] = client.publishes()
    assert request.topic == f"$iothub/methods/POST/reboot/?$rid={call.rid}"
    assert request.qos == 0 and json.loads(request.payload) == {"delay": 5}
    client.send(Publish(f"$iothub/methods/res/200/?$rid={call.rid}", b'{"done": true}', 1, 3))
    assert call.result.status == 200 and call.result.payload == {"done": True}


def test_telemetry_with_properties_is_buffered(front, hub):
    client = connected(front)
    topic = "devices/d1/messages/events/%24.mid=m1&%24.ct=application%2Fjson&level=a%20b%2Bc"
    client.send(Publish(topic, b'{"t": 1}', 1, 4))
    [message] = hub.telemetry.messages("d1")
    assert message.body == b'{"t": 1}'
    assert message.system_properties == {"$.mid": "m1", "$.ct": "application/json"}
    assert message.properties == {"level": "a b+c"}


def test_a_device_cannot_publish_as_another_device(front, hub):
    client = connected(front)
    client.send(Publish("devices/d2/messages/events/", b"spoof", 1, 5))
    assert client.connection.state == "closed"
    assert hub.telemetry.messages() == []
    assert not hub.is_online("d1")


def test_a_device_never_sees_another_devices_traffic(front, hub):
    one, two = connected(front, "d1", KEY), connected(front, "d2", KEY2)
    assert subscribe(one, "#", "$iothub/#", "devices/+/messages/devicebound/#") == (1, 1, 1)
    subscribe(two, METHODS, DESIRED)
    hub.patch_desired("d2", {"x": 1})
    hub.start_method("d2", "m")
    two.send(Publish("$iothub/twin/GET/?$rid=r", b" ", 1, 1))
    assert one.publishes() == []
    assert len(two.publishes()) == 3


def test_new_connection_takes_over_and_the_old_one_is_closed(front, hub):
    old = connected(front)
    subscribe(old, DESIRED)
    new = connected(front, session_present=True)
    assert old.connection.state == "closed"
    assert hub.is_online("d1")  # closing the old client does not mark the device offline
    hub.patch_desired("d1", {"a": 1})
    assert old.publishes() == [] and len(new.publishes()) == 1


def test_persistent_session_resends_unacknowledged_replies_after_reconnect(front):
    client = connected(front)
    client.send(Publish("$iothub/twin/GET/?$rid=r1", b" ", 1, 1))
    [reply] = client.publishes()  # never PUBACKed: the connection breaks
    client.front.handle_events(client, [])
    client.connection.connection_lost()
    front.client_closed(client)
    again = FakeClient(front)
    again.send(hub_connect())
    packets = again.take()
    assert packets[0] == Connack(True, 0)
    assert packets[1].topic == reply.topic and packets[1].dup


def test_disconnect_marks_the_device_offline(front, hub):
    client = connected(front)
    client.send(Disconnect())
    assert not hub.is_online("d1")
    assert hub.get_device("d1").connection_state == "Disconnected"


def test_unknown_topic_closes_the_connection(front):
    client = connected(front)
    client.send(Publish("some/random/topic", b"x", 1, 1))
    assert client.connection.state == "closed"


def dps_connect(registration_id, key, scope=wellknown.DPS_ID_SCOPE):
    token = build_token(f"{scope}/registrations/{registration_id}", key, now=NOW)
    return Connect(registration_id, f"{scope}/registrations/{registration_id}/api-version=2019-03-31",
                   token.encode())


def test_dps_registration_with_the_group_key_then_hub_connect(front, hub):
    key = derive_device_key(wellknown.DPS_GROUP_KEY, "new-dev")
    client = FakeClient(front)
    client.send(dps_connect("new-dev", key))
    assert client.take() == [Connack(False, 0)]
    client.send(Subscribe(1, (("$dps/registrations/res/#", 1),)))
    client.send(Publish("$dps/registrations/PUT/iotdps-register/?$rid=1",
                      b'{"registrationId": "new-dev", "payload": null}', 1, 2))
    [reply] = client.publishes()
    assert reply.topic == "$dps/registrations/res/200/?$rid=1"
    body = json.loads(reply.payload)
    assert body["status"] == "assigned"
    state = body["registrationState"]
    assert (state["assignedHub"], state["deviceId"], state["substatus"]) == ("localhost", "new-dev",
                                                                            "initialAssignment")
    client.send(Publish(f"$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId={body['operationId']}",
                      b" ", 1, 3))
    assert json.loads(client.publishes()[0].payload)["status"] == "assigned"
    hub_link = FakeClient(front)
    hub_link.send(hub_connect("new-dev", key))
    assert hub_link.take() == [Connack(False, 0)]


def test_dps_with_a_wrong_key_is_refused_at_connect(front, hub):
    client = FakeClient(front)
    client.send(dps_connect("new-dev", derive_device_key(wellknown.DPS_GROUP_KEY, "someone-else")))
    assert client.take() == [Connack(False, 5)]
    assert "new-dev" not in hub.registry


def test_dps_register_for_another_registration_id_is_refused(front, hub):
    client = FakeClient(front)
    client.send(dps_connect("dev-a", derive_device_key(wellknown.DPS_GROUP_KEY, "dev-a")))
    client.send(Publish("$dps/registrations/PUT/iotdps-register/?$rid=1", b'{"registrationId": "dev-b"}', 1, 1))
    assert client.publishes()[0].topic == "$dps/registrations/res/400/?$rid=1"
    assert "dev-b" not in hub.registry


def test_dps_refuses_to_take_over_a_device_it_did_not_create(front, hub):
    # d1 exists with a private key; the public group key derives a key for "d1" that must not become valid.
    key = derive_device_key(wellknown.DPS_GROUP_KEY, "d1")
    client = FakeClient(front)
    client.send(dps_connect("d1", key))
    assert client.take() == [Connack(False, 0)]
    client.send(Publish("$dps/registrations/PUT/iotdps-register/?$rid=1", b'{"registrationId": "d1"}', 1, 1))
    [reply] = client.publishes()
    assert reply.topic == "$dps/registrations/res/409/?$rid=1"
    body = json.loads(reply.payload)
    assert body["errorCode"] == 409001 and {"trackingId", "message", "timestampUtc"} <= set(body)
    assert hub.get_device("d1").primary_key == KEY and not hub.get_device("d1").has_key(key)
    device = FakeClient(front)
    device.send(hub_connect("d1", key))
    assert device.take() == [Connack(False, 5)]


def test_deleting_a_device_clears_its_persistent_session(front, hub):
    client = connected(front)
    subscribe(client, "$iothub/twin/res/#", DESIRED)
    hub.patch_desired("d1", {"old": 1})
    client.send(Publish("$iothub/twin/GET/?$rid=r1", b" ", 1, 2))
    assert len(client.publishes()) == 2  # desired patch and twin reply, neither acknowledged
    hub.delete_device("d1")  # the device is online: it is disconnected too
    assert client.connection.state == "closed"
    hub.create_device("d1", primary_key=KEY)
    fresh = connected(front)  # clean_session=0: no session of the deleted device to resume
    assert fresh.take() == []  # nothing of the old device is resent
    assert fresh.connection.session.subscriptions == {}
    hub.patch_desired("d1", {"new": 1})
    assert fresh.publishes() == []  # the old device's subscription is gone with it


def test_deleting_an_offline_device_clears_its_persistent_session(front, hub):
    client = connected(front)
    hub.patch_desired("d1", {"old": 1})
    client.send(Disconnect())
    hub.delete_device("d1")
    hub.create_device("d1", primary_key=KEY)
    connected(front, session_present=False)


def test_connection_is_closed_when_its_token_expires(front, hub, clock):
    client = FakeClient(front)
    client.send(hub_connect(ttl=300))
    assert client.take() == [Connack(False, 0)]
    clock.advance(299)
    front.expire_tokens()
    assert hub.is_online("d1") and client.connection.state == "connected"
    clock.advance(1)
    front.expire_tokens()
    assert client.connection.state == "closed" and not hub.is_online("d1")


def test_plug_and_play_model_id_from_the_username_reaches_the_twin(front, hub):
    connect = hub_connect()
    pnp = Connect(connect.client_id, "localhost/d1/?api-version=2020-09-30&DeviceClientType=x"
                  "&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1", connect.password)
    client = FakeClient(front)
    client.send(pnp)
    assert client.take() == [Connack(False, 0)]
    assert hub.get_twin("d1")["modelId"] == "dtmi:com:example:Thermostat;1"


def test_an_internal_failure_still_answers_the_twin_request(front, hub, monkeypatch):
    client = connected(front)

    def broken(device_id):
        raise RuntimeError("bug")

    monkeypatch.setattr(hub, "device_twin", broken)
    client.send(Publish("$iothub/twin/GET/?$rid=r1", b" ", 1, 1))
    assert client.publishes()[0].topic == "$iothub/twin/res/500/?$rid=r1"


def test_dps_and_hub_sessions_of_the_same_client_id_are_separate(front, hub):
    key = derive_device_key(wellknown.DPS_GROUP_KEY, "d1")
    dps = FakeClient(front)
    persistent = dps_connect("d1", key)
    dps.send(Connect(persistent.client_id, persistent.username, persistent.password, clean_session=False))
    dps.send(Publish("$dps/registrations/PUT/iotdps-register/?$rid=1", b'{"registrationId": "d1"}', 1, 1))
    assert any(isinstance(p, Publish) for p in dps.take())  # the reply is never acknowledged
    device = FakeClient(front)
    device.send(hub_connect("d1", KEY))
    assert device.take() == [Connack(False, 0)]  # nothing of the DPS session is resent here


# ---- token expiries: each pass touches only the connections that are due (heap, lazy deletion) -------

class CountingDict(dict):
    """The front's connection -> identity map, counting lookups: what a pass over connections costs."""

    lookups = 0

    def get(self, *args):
        self.lookups += 1
        return super().get(*args)


def connect_with_ttl(front, device_id, key, ttl):
    client = FakeClient(front)
    client.send(hub_connect(device_id, key, ttl=ttl))
    [connack] = client.take()
    assert isinstance(connack, Connack) and connack.return_code == 0
    return client


def test_each_connection_closes_at_its_own_token_expiry(front, hub, clock):
    late = connect_with_ttl(front, "d1", KEY, 600)
    early = connect_with_ttl(front, "d2", KEY2, 300)
    clock.advance(299.9)
    front.expire_tokens()
    assert not early.closed and not late.closed
    clock.advance(0.1)
    front.expire_tokens()
    assert early.closed and not hub.is_online("d2") and not late.closed and hub.is_online("d1")
    clock.advance(299.9)
    front.expire_tokens()
    assert not late.closed
    clock.advance(0.1)
    front.expire_tokens()
    assert late.closed and not hub.is_online("d1")


def test_a_renewed_token_replaces_the_old_deadline(front, hub, clock):
    old = connect_with_ttl(front, "d1", KEY, 300)
    clock.advance(250)  # the SDK renews before expiry: a new CONNECT with a new token
    token = build_token("localhost/devices/d1", KEY, ttl=3600, now=NOW + 250)
    renewed = FakeClient(front)
    renewed.send(Connect("d1", hub_connect().username, token.encode(), clean_session=False))
    assert renewed.take() == [Connack(True, 0)] and old.closed
    clock.advance(50)  # the old token's expiry: the renewed connection stays
    front.expire_tokens()
    assert not renewed.closed and hub.is_online("d1")
    clock.advance(3600 - 50 - 0.1)
    front.expire_tokens()
    assert not renewed.closed
    clock.advance(0.1)  # the new token's expiry
    front.expire_tokens()
    assert renewed.closed and not hub.is_online("d1")


def test_a_disconnected_device_is_not_closed_again_at_its_old_expiry(front, hub, clock, monkeypatch):
    client = connect_with_ttl(front, "d1", KEY, 300)
    client.send(Disconnect())
    assert client.closed and not hub.is_online("d1")
    closed = []
    monkeypatch.setattr(front, "disconnect_device", closed.append)
    monkeypatch.setattr(hub, "device_disconnected", closed.append)
    clock.advance(300)
    front.expire_tokens()
    assert closed == []


def test_a_pass_over_many_idle_connections_touches_only_the_due_ones(front, hub, clock):
    for i in range(300):
        hub.create_device(f"idle{i}", primary_key=KEY)
        connect_with_ttl(front, f"idle{i}", KEY, 3600)
    due = connect_with_ttl(front, "d1", KEY, 60)
    front._identities = CountingDict(front._identities)
    for _ in range(10):
        clock.advance(0.2)
        front.expire_tokens()
    assert front._identities.lookups == 0  # ten passes over 301 connections, none due: none looked at
    clock.advance(58)
    front.expire_tokens()
    assert due.closed and front._identities.lookups <= 1
    assert len(front.live_devices()) == 300


def test_the_expiry_heap_stays_the_size_of_the_live_connections(front, hub, clock):
    from emulator.mqtt.device_front import TOKEN_HEAP_SLACK
    connect_with_ttl(front, "d2", KEY2, 3600)
    for _ in range(500):  # reconnects: each leaves a stale entry behind
        connect_with_ttl(front, "d1", KEY, 3600)
    assert len(front.live_devices()) == 2
    assert len(front._token_expiries) <= 2 * 2 + TOKEN_HEAP_SLACK + 1
    clock.advance(3600)
    front.expire_tokens()
    assert front.live_devices() == []
