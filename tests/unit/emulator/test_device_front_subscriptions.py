"""Delivery by subscription, persistent sessions (across reconnects and restarts), inbound packet ids
that are never taken for duplicates, and the log lines that say why something was refused."""

import json
import logging

import pytest

from emulator import store as store_kinds
from emulator.hub import DeviceNotOnline, FakeClock, Hub
from mqttcodec import Connack, Connect, Disconnect, Publish, Subscribe, Unsubscribe
from emulator.mqtt.device_front import DeviceFront
from emulator.store import SqliteStore

from .test_device_front import (DESIRED, KEY, KEY2, METHODS, NOW, FakeClient, connected, hub_connect,  # noqa: F401
                                 subscribe, clock, front, hub)  # the last three: shared fixtures


# --- what a device may subscribe to ------------------------------------------------------------------

@pytest.mark.parametrize("topic_filter", [
    "#", "$iothub/#", METHODS, DESIRED, "$iothub/twin/res/#", "$iothub/methods/POST/reboot/#",
    "devices/d1/messages/devicebound/#", "devices/+/messages/devicebound/#", "devices/#", "+/+/+/+/+",
])
def test_filters_matching_the_devices_own_topics_are_granted(front, topic_filter):
    assert subscribe(connected(front), topic_filter) == (1,)


@pytest.mark.parametrize("topic_filter", [
    "devices/d2/messages/devicebound/#", "devices/d2/#", "$dps/registrations/res/#", "some/topic",
    "$iothub/twin/GET/#", "devices/d1/messages/events/#",
])
def test_filters_matching_none_of_the_devices_own_topics_are_refused(front, topic_filter):
    client = connected(front)
    assert subscribe(client, topic_filter) == (0x80,)
    assert client.connection.session.subscriptions == {}


# --- direct methods ----------------------------------------------------------------------------------

def test_a_method_to_a_device_that_never_subscribed_is_404103(front, hub):
    client = connected(front)
    with pytest.raises(DeviceNotOnline) as refused:
        hub.start_method("d1", "reboot")
    assert refused.value.error_code == 404103
    assert "hasn't registered the direct method callback" in refused.value.message
    assert client.publishes() == []


@pytest.mark.parametrize("topic_filter", [METHODS, "#", "$iothub/+/POST/#"])
def test_a_method_reaches_a_device_subscribed_by_any_matching_filter(front, hub, topic_filter):
    client = connected(front)
    subscribe(client, topic_filter)
    call = hub.start_method("d1", "reboot")
    assert [p.topic for p in client.publishes()] == [f"$iothub/methods/POST/reboot/?$rid={call.rid}"]


def test_a_subscription_to_one_method_receives_only_that_method(front, hub):
    client = connected(front)
    subscribe(client, "$iothub/methods/POST/reboot/#")
    hub.start_method("d1", "reboot")
    with pytest.raises(DeviceNotOnline):
        hub.start_method("d1", "reset")
    assert len(client.publishes()) == 1


def test_a_call_with_connect_timeout_waits_for_the_subscription(front, hub):
    client = connected(front)
    call = hub.start_method("d1", "reboot", connect_timeout=30)
    assert not call.dispatched and client.publishes() == []
    subscribe(client, DESIRED)  # not the methods topic: still waiting
    assert not call.dispatched
    client.send(Subscribe(101, ((METHODS, 1),)))
    [request] = client.publishes()
    assert request.topic == f"$iothub/methods/POST/reboot/?$rid={call.rid}" and call.dispatched


def test_after_unsubscribing_a_device_gets_no_more_methods_or_patches(front, hub):
    client = connected(front)
    subscribe(client, METHODS, DESIRED)
    client.send(Unsubscribe(5, (METHODS, DESIRED)))
    client.take()
    hub.patch_desired("d1", {"a": 1})
    with pytest.raises(DeviceNotOnline):
        hub.start_method("d1", "reboot")
    assert client.publishes() == []


# --- desired patches ---------------------------------------------------------------------------------

def test_desired_patches_go_only_to_subscribers(front, hub):
    silent, listening = connected(front, "d1", KEY), connected(front, "d2", KEY2)
    subscribe(listening, DESIRED)
    hub.patch_desired("d1", {"a": 1})
    hub.patch_desired("d2", {"a": 1})
    assert silent.publishes() == []
    assert [p.topic for p in listening.publishes()] == ["$iothub/twin/PATCH/properties/desired/?$version=2"]


def test_is_subscribed_is_the_hook_for_cloud_to_device_messages(front):
    client = connected(front)
    topic = "devices/d1/messages/devicebound/%24.mid=1"
    assert not front.is_subscribed("d1", topic)
    subscribe(client, "devices/d1/messages/devicebound/#")
    assert front.is_subscribed("d1", topic)
    assert not front.is_subscribed("d2", "devices/d2/messages/devicebound/%24.mid=1")


# --- persistent sessions -----------------------------------------------------------------------------

def test_subscriptions_survive_a_reconnect_with_clean_session_0(front, hub):
    client = connected(front)
    subscribe(client, METHODS)
    client.send(Disconnect())
    again = connected(front, session_present=True)  # the SDK never subscribes again
    call = hub.start_method("d1", "reboot")
    assert [p.topic for p in again.publishes()] == [f"$iothub/methods/POST/reboot/?$rid={call.rid}"]


def test_clean_session_1_drops_the_subscriptions(front, hub):
    client = connected(front)
    subscribe(client, METHODS)
    client.send(Disconnect())
    connected(front, clean_session=True)
    with pytest.raises(DeviceNotOnline):
        hub.start_method("d1", "reboot")


def _restart(store_path, hub):
    hub.close()
    hub = Hub("localhost", clock=FakeClock(NOW), store=SqliteStore(store_path))
    return hub, DeviceFront(hub)


@pytest.fixture
def stored(tmp_path):
    path = tmp_path / "hub.sqlite3"
    hub = Hub("localhost", clock=FakeClock(NOW), store=SqliteStore(path))
    hub.create_device("d1", primary_key=KEY)
    return path, hub


def test_subscriptions_survive_an_emulator_restart(stored):
    path, hub = stored
    subscribe(connected(DeviceFront(hub)), METHODS, DESIRED)
    hub, front = _restart(path, hub)
    client = connected(front, session_present=True)  # reconnects without subscribing
    call = hub.start_method("d1", "reboot")
    hub.patch_desired("d1", {"a": 1})
    assert [p.topic for p in client.publishes()] == [f"$iothub/methods/POST/reboot/?$rid={call.rid}",
                                                   "$iothub/twin/PATCH/properties/desired/?$version=2"]
    hub.close()


def test_a_clean_session_connect_ends_the_stored_session(stored):
    path, hub = stored
    front = DeviceFront(hub)
    subscribe(connected(front), METHODS)
    connected(front, clean_session=True)
    hub, front = _restart(path, hub)
    connected(front, session_present=False)
    with pytest.raises(DeviceNotOnline):
        hub.start_method("d1", "reboot")
    hub.close()


def test_a_clean_session_subscription_is_never_stored(stored):
    path, hub = stored
    subscribe(connected(DeviceFront(hub), clean_session=True), METHODS)
    assert hub.saved_sessions() == []
    hub.close()


def test_deleting_the_device_deletes_its_stored_session(stored):
    path, hub = stored
    client = connected(DeviceFront(hub))
    subscribe(client, METHODS)
    assert [r["client_id"] for r in hub.saved_sessions()] == ["d1"]
    client.send(Disconnect())
    hub.delete_device("d1")
    assert SqliteStore(path).load(store_kinds.SESSIONS) == []
    hub.create_device("d1", primary_key=KEY)
    hub, front = _restart(path, hub)
    connected(front, session_present=False)
    hub.close()


# --- inbound packet ids ------------------------------------------------------------------------------

def test_a_new_client_reusing_packet_id_1_with_dup_loses_no_telemetry(front, hub):
    """The SDK's client restarts packet ids at 1 and resends its unacknowledged publish with DUP=1."""
    client = connected(front)
    client.send(Publish("devices/d1/messages/events/", b"first", 1, 1))
    client.send(Disconnect())
    again = connected(front, session_present=True)
    again.send(Publish("devices/d1/messages/events/", b"second", 1, 1, dup=True))
    assert [m.body for m in hub.telemetry.messages("d1")] == [b"first", b"second"]


# --- log lines ---------------------------------------------------------------------------------------

def test_a_refused_connect_is_logged_with_the_fix_and_without_the_token(front, caplog):
    caplog.set_level(logging.INFO, logger="emulator.mqtt")
    client = FakeClient(front)
    connect = hub_connect(key=KEY2)
    client.send(connect)
    assert client.take() == [Connack(False, 5)]
    [line] = [r for r in caplog.records if "CONNECT refused" in r.getMessage()]
    text = line.getMessage()
    assert line.levelno == logging.INFO and "'d1'" in text and "CONNACK 5" in text
    assert "sr=localhost/devices/d1" in text  # the likely fix
    assert connect.password.decode().split("sig=")[1].split("&")[0] not in text


def test_a_connect_for_an_unknown_device_says_to_create_it(front, caplog):
    caplog.set_level(logging.INFO, logger="emulator.mqtt")
    FakeClient(front).send(hub_connect("ghost"))
    assert any("create the device first" in r.getMessage() for r in caplog.records)


def test_a_connect_the_session_refuses_is_logged_with_the_fix(front, caplog):
    caplog.set_level(logging.INFO, logger="emulator.mqtt")
    client = FakeClient(front)
    client.send(Connect("d1", protocol_name="MQIsdp", protocol_level=3))
    assert client.take() == [Connack(False, 1)]
    assert any(r.levelno == logging.INFO and "CONNACK 1" in r.getMessage() and "MQTT 3.1.1" in r.getMessage()
               for r in caplog.records)


def test_a_refused_subscribe_is_logged(front, caplog):
    caplog.set_level(logging.INFO, logger="emulator.mqtt")
    subscribe(connected(front), "devices/d2/#")
    [line] = [r for r in caplog.records if "SUBSCRIBE refused" in r.getMessage()]
    assert line.levelno == logging.INFO and "device d1" in line.getMessage() and "devices/d2/#" in line.getMessage()


def test_a_violation_that_closes_the_connection_is_logged(front, caplog):
    caplog.set_level(logging.INFO, logger="emulator.mqtt")
    client = connected(front)
    client.send(Publish("devices/d2/messages/events/", b"spoof", 1, 1))
    assert client.connection.state == "closed"
    assert any(r.levelno == logging.INFO and "device d1" in r.getMessage() and "devices/d2/messages/events/"
               in r.getMessage() for r in caplog.records)


def test_a_protocol_error_that_closes_the_connection_is_logged(front, caplog):
    caplog.set_level(logging.INFO, logger="emulator.mqtt")
    client = connected(front)
    front.handle_events(client, client.connection.receive_data(b"\x30\xff\xff\xff\xff\x01"))
    assert any(r.levelno == logging.INFO and r.getMessage().startswith("device d1: connection closed: protocol")
               for r in caplog.records)


def test_handled_requests_are_logged_at_debug(front, caplog):
    caplog.set_level(logging.DEBUG, logger="emulator.mqtt")
    client = connected(front)
    subscribe(client, METHODS)
    client.send(Publish("$iothub/twin/GET/?$rid=7", b" ", 1, 1))
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("subscribed" in m and METHODS in m for m in messages)
    assert any("twin GET $rid=7" in m for m in messages)


def test_twin_answers_need_no_subscription(front):
    client = connected(front)
    client.send(Publish("$iothub/twin/GET/?$rid=1", b" ", 1, 1))
    [reply] = client.publishes()
    assert reply.topic == "$iothub/twin/res/200/?$rid=1" and json.loads(reply.payload)["desired"]["$version"] == 1
