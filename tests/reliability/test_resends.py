"""What reconnecting devices and many-client fleets do that a steady load never does: resend with DUP=1
after a dropped connection, restart their packet ids, and reuse `$rid`s (the C SDK counts from 1 in every
process; Microsoft's MQTT samples use constants). QoS 1 is at-least-once: a duplicate is allowed, a loss
is not, and every request gets its own fresh answer on the connection that asked.

Uses the module's threaded emulator (conftest.py); every test has its own devices.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

from mqttcodec import Publish

from .support import RawDevice, reply_status, rid_of

REPORTED = "$iothub/twin/PATCH/properties/reported/?$rid="
METHOD_REQUEST = "$iothub/methods/POST/"
DESIRED = "$iothub/twin/PATCH/properties/desired/"


def telemetry_bodies(emulator, device_id: str) -> list[bytes]:
    return emulator.threaded.call(lambda: [m.body for m in emulator.hub.telemetry.messages(device_id)])


def reported(emulator, device_id: str) -> dict:
    return emulator.threaded.get_twin(device_id)["properties"]["reported"]


async def test_a_packet_id_reused_after_its_puback_is_a_new_message(emulator):
    """A device that restarts its ids at 1 (a new client object on a persistent session) or simply reuses
    one id: every PUBACKed publish is applied, none is taken for a duplicate."""
    device_id, key = emulator.add_device("reuse")
    device = await RawDevice.connected(emulator, device_id, key, clean_session=False)
    rounds = 20
    try:
        for n in range(1, rounds + 1):
            device.send(Publish(f"{REPORTED}r{n}", json.dumps({"n": n, f"k{n}": n}).encode(), 1, 7))
            assert await device.acknowledged(7)
            reply = await device.expect_reply(f"r{n}")
            assert reply is not None and reply_status(reply) == 204
            device.send(Publish(f"devices/{device_id}/messages/events/", f"m{n}".encode(), 1, 7))
            assert await device.acknowledged(7)
    finally:
        await device.close()
    twin = reported(emulator, device_id)
    assert twin["$version"] == 1 + rounds and twin["n"] == rounds
    assert all(twin[f"k{n}"] == n for n in range(1, rounds + 1))
    assert telemetry_bodies(emulator, device_id) == [f"m{n}".encode() for n in range(1, rounds + 1)]


async def test_publishes_resent_with_dup_after_a_dropped_connection_are_all_applied(emulator):
    """The connection dies with reported patches and telemetry unacknowledged (half of them never reached
    the hub: lost in the network); the device reconnects on its session and resends them all with DUP=1 and
    the same ids: each is PUBACKed, each `$rid` answered on the new connection, every patch is in the twin
    and every message received (at least once). A DUP flag never makes the hub drop a message."""
    device_id, key = emulator.add_device("dup")
    count = 10
    patches = [Publish(f"{REPORTED}d{n}", json.dumps({f"p{n}": n}).encode(), 1, n) for n in range(1, count + 1)]
    messages = [Publish(f"devices/{device_id}/messages/events/", f"t{n}".encode(), 1, count + n)
                for n in range(1, count + 1)]
    first = await RawDevice.connected(emulator, device_id, key, clean_session=False)
    for publish in patches[: count // 2] + messages[: count // 2]:
        first.send(publish)
    first.kill()  # no PUBACK read, no DISCONNECT: the device cannot know what arrived
    again = await RawDevice.connected(emulator, device_id, key, clean_session=False, subscribe=())
    try:
        for publish in patches + messages:
            again.send(replace(publish, dup=True))
        for publish in patches + messages:
            assert await again.acknowledged(publish.packet_id), publish.topic
        for publish in patches:
            reply = await again.expect_reply(rid_of(publish.topic))
            assert reply is not None and reply_status(reply) == 204, publish.topic
    finally:
        await again.close()
        await first.close()
    twin = reported(emulator, device_id)
    assert all(twin.get(f"p{n}") == n for n in range(1, count + 1)), twin
    received = telemetry_bodies(emulator, device_id)
    assert all(f"t{n}".encode() in received for n in range(1, count + 1)), received


async def test_deliveries_the_device_never_acknowledged_are_resent_with_dup_on_its_next_connection(emulator):
    """A desired patch (QoS 1) and a method request (QoS 0, as IoT Hub sends them: a method never runs twice)
    reach the device, which dies before PUBACKing anything. On its next connection (same session) the
    desired patch comes again with DUP=1 and its packet id, the method request does not; the device's
    answer, sent on the new connection within the response timeout, completes the call."""
    device_id, key = emulator.add_device("redeliver")
    silent = await RawDevice.connected(emulator, device_id, key, clean_session=False, auto_puback=False)
    loop = asyncio.get_running_loop()
    call = loop.run_in_executor(None, lambda: emulator.threaded.invoke_method(
        device_id, "unlock", {"code": 7}, response_timeout=60))
    again = None
    try:
        request = await silent.expect(lambda p: isinstance(p, Publish) and p.topic.startswith(METHOD_REQUEST))
        await loop.run_in_executor(None, lambda: emulator.threaded.patch_desired(device_id, {"mode": "eco"}))
        desired = await silent.expect(lambda p: isinstance(p, Publish) and p.topic.startswith(DESIRED))
        assert request is not None and desired is not None and desired.qos == 1
        silent.kill()
        again = await RawDevice.connected(emulator, device_id, key, clean_session=False, subscribe=())
        resent = await again.expect(lambda p: isinstance(p, Publish) and p.topic.startswith(DESIRED))
        assert resent is not None and resent.dup and resent.packet_id == desired.packet_id
        assert json.loads(resent.payload)["mode"] == "eco"
        assert not [p for p in again.packets if isinstance(p, Publish) and p.topic.startswith(METHOD_REQUEST)]
        again.publish(f"$iothub/methods/res/200/?$rid={rid_of(request.topic)}", b'{"unlocked": true}')
        result = await call
        assert (result.status, result.payload) == (200, {"unlocked": True})
    finally:
        if again is not None:
            await again.close()
        await silent.close()


async def test_the_same_rid_from_many_devices_at_once_gets_each_its_own_fresh_answer(emulator):
    """Twenty devices, all counting `$rid`s from 1 as the C SDK does, patch and read their twins at the
    same time, several rounds: every patch is applied, every answer reaches the connection that asked,
    and each twin GET shows that device's own latest patch (never a remembered or another's answer)."""
    devices = []
    for _ in range(20):
        device_id, key = emulator.add_device("rid")
        devices.append((device_id, await RawDevice.connected(emulator, device_id, key)))
    rounds = 5

    async def one_device(device_id: str, device: RawDevice) -> None:
        for n in range(1, rounds + 1):
            device.publish(f"{REPORTED}1", json.dumps({"who": device_id, "round": n}).encode())
            device.publish("$iothub/twin/GET/?$rid=2", b" ")
            patched = await device.expect_reply("1")
            read = await device.expect_reply("2")
            assert patched is not None and reply_status(patched) == 204
            assert read is not None and reply_status(read) == 200
            twin = json.loads(read.payload)["reported"]
            assert (twin["who"], twin["round"], twin["$version"]) == (device_id, n, 1 + n), (device_id, twin)

    try:
        await asyncio.gather(*(one_device(device_id, device) for device_id, device in devices))
        for device_id, device in devices:
            stray = [p for p in device.packets if isinstance(p, Publish)]
            assert stray == [], (device_id, stray)  # no answer twice, none meant for another device
            twin = reported(emulator, device_id)
            assert (twin["who"], twin["round"], twin["$version"]) == (device_id, rounds, 1 + rounds)
    finally:
        for _, device in devices:
            await device.close()


async def test_two_requests_in_flight_with_one_rid_are_both_applied_and_both_answered(emulator):
    device_id, key = emulator.add_device("samerid")
    device = await RawDevice.connected(emulator, device_id, key)
    try:
        device.publish(f"{REPORTED}same", b'{"a": 1}')
        device.publish(f"{REPORTED}same", b'{"b": 2}')
        answers = [await device.expect_reply("same"), await device.expect_reply("same")]
        assert [reply_status(answer) for answer in answers] == [204, 204]
    finally:
        await device.close()
    twin = reported(emulator, device_id)
    assert (twin["a"], twin["b"], twin["$version"]) == (1, 2, 3)
