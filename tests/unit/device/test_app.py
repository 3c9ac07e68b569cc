"""The device's life with a fake SDK client: start, methods, desired properties, drops, telemetry, stop."""

import asyncio
import io
import json
import os
import signal
import threading

import pytest
from azure.iot.device import exceptions as sdk_errors

from device import runner as device_runner
from device.app import DeviceAgent, RunOptions
from device.runner import run_devices
from device.connecting import Backoff
from device.errors import AuthenticationRefused, ProvisioningFailed
from device.eventlog import EventLog
from device.methods import MethodConfig
from hubsettings import DeviceSettings, ProvisioningSettings, parse_connection_string

from .fakes import FakeDeviceClient, FakeFactory, FakeTime, GatedSleep

KEY = "8cc0Q0uyQZXpjwRZmcbS7ylk+eo0FLauFovl2gd1Vbc="
WAIT = 10.0  # generous bound on waits for things that should happen at once; never reached when green


def cs_settings(device_id="myDeviceId"):
    cs = parse_connection_string(f"HostName=hub.example.test;DeviceId={device_id};SharedAccessKey={KEY}",
                                 expect="device")
    return DeviceSettings(cs, None, None, "test")


def dps_settings(registration_id):
    prov = ProvisioningSettings("dps.example.test", "0ne000TEST", registration_id, KEY, from_group_key=True)
    return DeviceSettings(None, prov, None, "test")


class Harness:
    def __init__(self, client=None, options=None, sleep=None, settings=None):
        self.client = client or FakeDeviceClient()
        self.factory = FakeFactory(self.client)
        self.out = io.StringIO()
        self.time = FakeTime()
        self.options = options or RunOptions(methods=MethodConfig(reboot_delay=20, diagnostics_delay=3),
                                             telemetry=False)
        self.agent = DeviceAgent(settings or cs_settings(), self.options, self.factory,
                                 EventLog(self.out, now=self.time.utc), sleep=sleep or self.time.sleep,
                                 clock=self.time.clock, now=self.time.utc)

    @property
    def lines(self):
        return self.out.getvalue().splitlines()

    async def start(self):
        await asyncio.wait_for(self.agent.start(), WAIT)

    async def settle(self):
        await asyncio.wait_for(self.agent.drain(), WAIT)


async def test_start_connects_reports_static_properties_and_reads_the_twin():
    h = Harness()
    await h.start()
    assert h.client.connect_calls == 1 and h.client.twin_reads == 1
    static = h.client.reported[0]
    assert set(static) == {"swVersion", "processorArchitecture", "state", "rebootState"}
    assert static["rebootState"] == "running"
    assert h.client.on_method_request_received is not None
    assert h.client.on_twin_desired_properties_patch_received is not None
    assert any(line.endswith("myDeviceId connected") for line in h.lines)
    await h.agent.stop()
    assert h.client.shutdown_calls == 1


async def test_every_method_answered_through_the_client():
    h = Harness()
    await h.start()
    expected = {"rebootDevice": 200, "lockDoor": 200, "blink": 200, "turnon": 200, "turnoff": 200,
                "rundiagnostics": 202, "unknownThing": 404}
    requests = {name: h.client.invoke(name) for name in expected}
    await h.settle()
    for name, status in expected.items():
        response = h.client.response_to(requests[name])
        assert response.status == status, name
    assert h.client.response_to(requests["unknownThing"]).payload == {"Response": "Unknown method"}
    assert any(line.endswith(" myDeviceId method lockDoor -> 200 (locked)") for line in h.lines)
    assert any(line.endswith(" myDeviceId method rebootDevice received") for line in h.lines)
    await h.agent.stop()


async def test_bad_lock_door_payload_is_400_and_reports_nothing():
    h = Harness()
    await h.start()
    before = len(h.client.reported)
    request = h.client.invoke("lockDoor", {"lockTime": "soon"})
    await h.settle()
    response = h.client.response_to(request)
    assert response.status == 400 and "lockTime 'soon'" in response.payload["Response"]
    assert len(h.client.reported) == before
    await h.agent.stop()


async def test_a_handler_that_raises_still_answers_500(monkeypatch):
    h = Harness()
    await h.start()

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("device.methods.handle", broken)
    request = h.client.invoke("lockDoor", None)
    await h.settle()
    response = h.client.response_to(request)
    assert response.status == 500 and "boom" in response.payload["Response"]
    await h.agent.stop()


async def test_reboot_does_not_delay_lock_door():
    """The tutorial's reboot handler slept 20 s and blocked everything; here the reboot is a
    follow-up that waits on a gate the test controls, and lockDoor is answered meanwhile."""
    gate = GatedSleep()
    h = Harness(sleep=gate.sleep)
    await h.start()
    reboot = h.client.invoke("rebootDevice")
    await h.settle()
    await gate.wait_for_sleeper(20)  # the reboot is in progress and holds its 20 s
    assert h.client.response_to(reboot).status == 200
    assert h.client.all_reported()["rebootState"] == "rebooting"

    lock = h.client.invoke("lockDoor", {"lockTime": "10m"})
    await h.settle()
    assert h.client.response_to(lock).status == 200  # answered while the reboot still runs
    reported = h.client.all_reported()
    assert reported["door"]["locked"] is True and "rebootTime" not in reported

    second = h.client.invoke("rebootDevice")
    await h.settle()
    assert h.client.response_to(second).status == 409

    h.time.now = 20  # what the device's clock says when the reboot completes
    gate.release(20)
    await asyncio.wait_for(_until(lambda: "rebootTime" in h.client.all_reported()), WAIT)
    reported = h.client.all_reported()
    assert reported["rebootState"] == "running"
    assert reported["rebootTime"] == "2026-11-22T12:00:20Z"
    assert reported["rebootStartTime"] == "2026-11-22T12:00:00Z"
    assert any(line.endswith("myDeviceId reboot finished") for line in h.lines)
    await h.agent.stop()


async def test_handlers_called_from_sdk_threads_return_at_once():
    """The SDK calls handlers from its own threads; they must hand over and not wait for the work."""
    gate = GatedSleep()
    h = Harness(sleep=gate.sleep)
    await h.start()
    returned = threading.Event()

    def sdk_thread():
        h.client.invoke("rebootDevice")
        h.client.on_twin_desired_properties_patch_received({"name": "hall", "$version": 2})
        returned.set()

    await asyncio.to_thread(sdk_thread)
    assert returned.is_set()
    await h.settle()
    await gate.wait_for_sleeper(20)
    assert h.agent.desired_values == {"name": "hall"}
    assert h.client.all_reported()["name"]["ac"] == 200
    await h.agent.stop()  # cancels the reboot in progress


async def test_lock_with_a_time_unlocks_by_itself_and_a_new_lock_replaces_the_timer():
    gate = GatedSleep()
    h = Harness(sleep=gate.sleep)
    await h.start()
    h.client.invoke("lockDoor", {"lockTime": "10m"})
    await h.settle()
    await gate.wait_for_sleeper(600)
    h.client.invoke("lockDoor", {"lockTime": "30s"})
    await h.settle()
    await gate.wait_for_sleeper(30)
    assert [s for s, _ in gate.waiting] == [30]  # the 10 min timer was replaced
    h.client.invoke("lockDoor", {"lockTime": "whenever"})  # a bad call changes nothing
    await h.settle()
    assert [s for s, _ in gate.waiting] == [30]
    gate.release(30)
    await asyncio.wait_for(_until(lambda: h.client.all_reported()["door"]["locked"] is False), WAIT)
    h.client.invoke("lockDoor", {"lockTime": "1h"})
    await h.settle()
    await gate.wait_for_sleeper(3600)
    h.client.invoke("lockDoor")  # locked for good: the pending unlock is cancelled
    await h.settle()
    await asyncio.wait_for(_until(lambda: not gate.waiting), WAIT)
    assert h.client.all_reported()["door"]["locked"] is True and "until" not in h.client.all_reported()["door"]
    await h.agent.stop()


async def test_rundiagnostics_reports_its_result_after_the_delay():
    gate = GatedSleep()
    h = Harness(sleep=gate.sleep)
    await h.start()
    request = h.client.invoke("rundiagnostics")
    await h.settle()
    assert h.client.response_to(request).status == 202
    await gate.wait_for_sleeper(3)
    assert "rundiagnostics" not in h.client.all_reported()
    h.time.now = 3
    gate.release(3)
    await asyncio.wait_for(_until(lambda: "rundiagnostics" in h.client.all_reported()), WAIT)
    assert h.client.all_reported()["rundiagnostics"] == {
        "value": "Diagnostics run complete at 2026-11-22T12:00:03Z"}
    await h.agent.stop()


async def test_desired_patches_are_acknowledged_and_logged():
    h = Harness()
    await h.start()
    h.client.on_twin_desired_properties_patch_received({"brightness": 55, "building": 43, "$version": 2})
    h.client.on_twin_desired_properties_patch_received({"brightness": "dim", "$version": 3})
    await h.settle()
    reported = h.client.all_reported()
    assert reported["building"] == {"value": 43, "ac": 200, "ad": "completed", "av": 2}
    assert reported["brightness"]["ac"] == 400 and reported["brightness"]["av"] == 3
    assert h.agent.desired_values == {"brightness": 55, "building": 43}  # the bad value was not applied
    assert any("desired patch v3" in line for line in h.lines)
    assert any("property brightness = \"dim\" -> 400 brightness must be a number" in line for line in h.lines)
    await h.agent.stop()


async def test_desired_state_changed_while_offline_is_applied_at_start():
    twin = {"desired": {"name": "kitchen", "brightness": 40, "floor": 2, "$version": 7},
            "reported": {"name": {"value": "kitchen", "ac": 200, "ad": "completed", "av": 5},
                         "brightness": {"value": 30, "ac": 200, "ad": "completed", "av": 5},
                         "$version": 12}}
    h = Harness(FakeDeviceClient(twin=twin))
    await h.start()
    assert h.agent.desired_values == {"name": "kitchen", "brightness": 40, "floor": 2}
    acks = [patch for patch in h.client.reported if "brightness" in patch or "floor" in patch or "name" in patch]
    assert acks == [{"brightness": {"value": 40, "ac": 200, "ad": "completed", "av": 7},
                     "floor": {"value": 2, "ac": 200, "ad": "completed", "av": 7}}]  # name not repeated
    # A patch the twin already contained (it raced with the read) is not applied twice.
    h.client.on_twin_desired_properties_patch_received({"floor": 2, "$version": 7})
    await h.settle()
    assert len(h.client.reported) == 2
    await h.agent.stop()


async def test_a_reconnect_rereads_the_twin_and_applies_what_changed_meanwhile():
    h = Harness()
    await h.start()
    h.client.set_connected(False)
    await asyncio.sleep(0)
    h.client.twin = {"desired": {"floor": 4, "$version": 2}, "reported": {"$version": 3}}
    h.client.set_connected(True)
    await asyncio.wait_for(_until(lambda: h.agent.desired_values == {"floor": 4}), WAIT)
    await h.settle()
    assert h.client.twin_reads == 2
    assert h.client.all_reported()["floor"]["av"] == 2
    assert any(line.endswith("connection lost; the SDK is reconnecting") for line in h.lines)
    assert any(line.endswith("reconnected") for line in h.lines)
    await h.agent.stop()


async def test_background_exceptions_are_logged_once_connected():
    h = Harness()
    h.agent._loop = asyncio.get_running_loop()
    h.agent._on_background_exception(sdk_errors.ConnectionFailedError("refused early"))
    await h.start()
    h.client.on_background_exception(sdk_errors.ConnectionDroppedError("socket closed"))
    await asyncio.wait_for(_until(lambda: any("background error: socket closed" in l for l in h.lines)), WAIT)
    assert not any("refused early" in line for line in h.lines)  # the connect attempts said it already
    await h.agent.stop()


async def test_credentials_refused_on_reconnect_say_the_sdk_gives_up():
    # Deleting a connected device: the SDK's reconnect gets CONNACK "not authorised", reports it as a
    # background error and never tries again. It used to read as just another "background error".
    from azure.iot.device.common import transport_exceptions
    h = Harness()
    await h.start()
    h.client.set_connected(False)
    h.client.on_background_exception(transport_exceptions.UnauthorizedError("Connection Refused: not authorised."))
    await asyncio.wait_for(_until(lambda: any("refused this device's credentials" in l for l in h.lines)), WAIT)
    line = next(l for l in h.lines if "refused this device's credentials" in l)
    assert "(Connection Refused: not authorised.)" in line and "does not retry this: stopping this device" in line
    assert not any("background error: Connection Refused" in l for l in h.lines)
    assert h.agent.credentials_refused.is_set()  # whoever runs the agent stops it (runner tests below)
    assert h.agent.refusal_message().startswith(
        "IoT hub hub.example.test refused the device's credentials on a reconnect (Connection Refused")
    h.client.on_background_exception(sdk_errors.CredentialError("again"))  # said once only
    await asyncio.sleep(0.01)
    assert sum("refused this device's credentials" in l for l in h.lines) == 1
    await h.agent.stop()
    await h.agent.stop()  # a second stop does nothing
    assert h.client.shutdown_calls == 1


def refuse(client, reason="Connection Refused: not authorised."):
    """What the SDK does when a connected device is deleted: drop, then a reconnect refused for good."""
    from azure.iot.device.common import transport_exceptions
    client.set_connected(False)
    client.on_background_exception(transport_exceptions.UnauthorizedError(reason))


async def test_a_device_refused_after_it_connected_stops_the_listener_with_auth_refused():
    """The SDK never reconnects after a refusal: the listener must not sit there looking alive."""
    client = FakeDeviceClient()
    out = io.StringIO()
    stop = asyncio.Event()  # never set: the refusal alone ends the run

    def started(agents):
        threading.Thread(target=refuse, args=(client,)).start()  # as from an SDK thread

    with pytest.raises(AuthenticationRefused) as raised:
        await asyncio.wait_for(run_devices([cs_settings()], RunOptions(telemetry=False), FakeFactory(client),
                                           EventLog(out), stop, started=started), WAIT)
    assert str(raised.value) == (
        "IoT hub hub.example.test refused the device's credentials on a reconnect (Connection Refused: not "
        "authorised.): was the device deleted, disabled or given new keys? Fix that, then start the listener again")
    assert raised.value.exit_code == 4
    assert client.shutdown_calls == 1
    lines = out.getvalue().splitlines()
    assert "refused this device's credentials" in lines[-1] and "Stopped" not in out.getvalue()


async def test_other_background_errors_do_not_stop_the_listener():
    client = FakeDeviceClient()
    stop = asyncio.Event()
    out = io.StringIO()

    def started(agents):
        client.set_connected(False)
        client.on_background_exception(sdk_errors.ConnectionDroppedError("socket closed"))
        asyncio.get_running_loop().call_later(0.05, stop.set)

    code = await asyncio.wait_for(run_devices([cs_settings()], RunOptions(telemetry=False), FakeFactory(client),
                                              EventLog(out), stop, started=started), WAIT)
    assert code == 0 and out.getvalue().splitlines()[-1] == "Stopped"
    assert "background error: socket closed" in out.getvalue()


def fleet_of(n):
    clients = {f"sim-00{i}": FakeDeviceClient() for i in range(1, n + 1)}
    return clients, FakeFactory(by_id=clients), [dps_settings(device_id) for device_id in clients]


async def test_a_fleet_stops_a_refused_device_and_keeps_the_others_until_none_is_left():
    clients, factory, settings = fleet_of(3)
    out = io.StringIO()
    running = asyncio.Event()
    task = asyncio.create_task(run_devices(settings, RunOptions(telemetry=False), factory, EventLog(out),
                                           asyncio.Event(), started=lambda agents: running.set()))
    await asyncio.wait_for(running.wait(), WAIT)
    refuse(clients["sim-002"])
    await asyncio.wait_for(_until(lambda: clients["sim-002"].shutdown_calls == 1), WAIT)
    assert "sim-002 stopped (credentials refused); 2 of 3 devices still running" in out.getvalue().splitlines()
    assert not task.done()
    request = clients["sim-001"].invoke("turnon")  # the others still serve
    await asyncio.wait_for(_until(lambda: clients["sim-001"].responses), WAIT)
    assert clients["sim-001"].response_to(request).status == 200
    refuse(clients["sim-003"])
    await asyncio.sleep(0.01)
    assert not task.done()
    refuse(clients["sim-001"])
    with pytest.raises(AuthenticationRefused) as raised:
        await asyncio.wait_for(task, WAIT)
    assert str(raised.value).startswith(
        "all 3 devices stopped: IoT hub hub.example.test refused their credentials on a reconnect (the last, sim-001: ")
    assert all(c.shutdown_calls == 1 for c in clients.values())


async def test_a_fleet_stopped_after_a_refusal_exits_0_and_names_the_stopped_device():
    clients, factory, settings = fleet_of(3)
    out = io.StringIO()
    stop = asyncio.Event()
    running = asyncio.Event()
    task = asyncio.create_task(run_devices(settings, RunOptions(telemetry=False), factory, EventLog(out), stop,
                                           started=lambda agents: running.set()))
    await asyncio.wait_for(running.wait(), WAIT)
    refuse(clients["sim-002"])
    await asyncio.wait_for(_until(lambda: clients["sim-002"].shutdown_calls == 1), WAIT)
    stop.set()
    assert await asyncio.wait_for(task, WAIT) == 0
    lines = out.getvalue().splitlines()
    assert "Stopping: disconnecting 2 devices" in lines
    assert lines[-1] == "Stopped (1 of 3 devices had stopped earlier, their credentials refused: sim-002)"
    assert all(c.shutdown_calls == 1 for c in clients.values())


async def test_a_refusal_before_the_fleet_is_up_is_a_failed_start():
    class RefusedWhileStarting(FakeDeviceClient):
        async def get_twin(self):
            refuse(self)
            await asyncio.Event().wait()  # the SDK would never answer now

    clients, _, settings = fleet_of(3)
    clients["sim-003"] = RefusedWhileStarting()
    factory = FakeFactory(by_id=clients)
    with pytest.raises(AuthenticationRefused, match="^sim-003: IoT hub hub.example.test refused"):
        await asyncio.wait_for(run_devices(settings, RunOptions(telemetry=False), factory,
                                           EventLog(io.StringIO()), asyncio.Event()), WAIT)
    assert all(c.shutdown_calls == 1 for c in clients.values())


async def test_a_failed_report_is_logged_and_the_method_still_answered():
    class Flaky(FakeDeviceClient):
        async def patch_twin_reported_properties(self, patch):
            raise sdk_errors.NoConnectionError("not connected")
    h = Harness(Flaky())
    await h.start()
    request = h.client.invoke("turnon")
    await h.settle()
    assert h.client.response_to(request).status == 200
    assert any("reported properties not sent (not connected)" in line for line in h.lines)
    await h.agent.stop()


async def test_telemetry_is_json_utf8_at_the_interval():
    gate = GatedSleep()
    options = RunOptions(telemetry=True, telemetry_interval=7)
    h = Harness(options=options, sleep=gate.sleep)
    await h.start()
    await gate.wait_for_sleeper(7)
    assert h.client.messages == []
    gate.release(7)
    await asyncio.wait_for(_until(lambda: len(h.client.messages) == 1), WAIT)
    message = h.client.messages[0]
    assert message.content_type == "application/json" and message.content_encoding == "utf-8"
    body = json.loads(message.data)
    assert set(body) == {"temperature", "humidity"}
    await h.agent.stop()


async def test_stop_ends_telemetry_even_when_a_send_completes_as_it_is_cancelled():
    """Python 3.11's wait_for drops a cancellation that arrives as the awaited send completes: the
    telemetry loop must still end, or stop() (Ctrl-C, the fleet's shutdown) waits for ever."""
    stopping = []

    class StoppedMidSend(FakeDeviceClient):
        async def send_message(self, message):
            await super().send_message(message)
            if not stopping:
                stopping.append(asyncio.ensure_future(h.agent.stop()))  # cancels the loop in the next pass
                await asyncio.sleep(0)  # ...in which this send completes too

    h = Harness(client=StoppedMidSend(), options=RunOptions(telemetry=True, telemetry_interval=0.01),
                sleep=asyncio.sleep)
    await h.start()
    await asyncio.wait_for(_until(lambda: stopping), WAIT)
    await asyncio.wait_for(stopping[0], WAIT)
    assert h.agent.stopped


async def test_provisioning_then_connecting_to_the_assigned_hub():
    h = Harness(settings=dps_settings("sim-007"))
    await h.start()
    assert h.factory.registrations == ["sim-007"]
    identity = h.factory.identities[0]
    assert (identity.host_name, identity.device_id, identity.symmetric_key) == ("hub.example.test", "sim-007", KEY)
    assert identity.connection_string is None
    await h.agent.stop()


async def test_provisioning_that_is_not_assigned_fails():
    h = Harness(settings=dps_settings("sim-007"))
    h.factory.provisioning_status = "disabled"
    with pytest.raises(ProvisioningFailed, match="status 'disabled'"):
        await h.start()


async def test_fleet_starts_every_device_and_stops_them_all():
    factory = FakeFactory()
    stop = asyncio.Event()
    out = io.StringIO()
    seen = []

    def started(agents):
        seen.extend(a.device_id for a in agents)
        stop.set()

    code = await asyncio.wait_for(run_devices(
        [dps_settings(f"sim-00{i}") for i in (1, 2, 3)], RunOptions(telemetry=False), factory,
        EventLog(out), stop, started=started), WAIT)
    assert code == 0 and seen == ["sim-001", "sim-002", "sim-003"]
    assert sorted(factory.created) == seen
    assert all(c.shutdown_calls == 1 for c in factory.created.values())


async def test_fleet_starts_whole_or_not_at_all():
    bad = FakeDeviceClient(connect_errors=[sdk_errors.CredentialError("not authorized")])
    factory = FakeFactory(by_id={"sim-002": bad})
    with pytest.raises(AuthenticationRefused, match="^sim-002: "):
        await asyncio.wait_for(run_devices(
            [dps_settings(f"sim-00{i}") for i in (1, 2, 3)], RunOptions(telemetry=False), factory,
            EventLog(io.StringIO()), asyncio.Event()), WAIT)
    assert all(c.shutdown_calls == 1 for c in factory.created.values())


async def test_sigterm_stops_cleanly_with_exit_code_0():
    client = FakeDeviceClient()
    stop = asyncio.Event()
    out = io.StringIO()
    remove = device_runner.install_stop_signals(stop)
    try:
        code = await asyncio.wait_for(run_devices(
            [cs_settings()], RunOptions(telemetry=False), FakeFactory(client), EventLog(out), stop,
            started=lambda agents: os.kill(os.getpid(), signal.SIGTERM)), WAIT)
    finally:
        remove()
    assert code == 0 and client.shutdown_calls == 1
    lines = out.getvalue().splitlines()
    assert lines[-3] == "Stopping: disconnecting 1 device"
    assert lines[-2].endswith(" myDeviceId disconnected") and lines[-1] == "Stopped"


async def test_stop_during_the_first_connect_is_clean():
    client = FakeDeviceClient(connect_errors=[sdk_errors.ConnectionFailedError()] * 100)
    stop = asyncio.Event()
    gate = GatedSleep()
    task = asyncio.create_task(run_devices(
        [cs_settings()], RunOptions(telemetry=False, backoff=Backoff(timeout=600)), FakeFactory(client),
        EventLog(io.StringIO()), stop, sleep=gate.sleep))
    await gate.wait_for_sleeper(1)  # waiting to retry
    stop.set()
    assert await asyncio.wait_for(task, WAIT) == 0
    assert client.shutdown_calls == 1


async def _until(condition):
    while not condition():
        await asyncio.sleep(0.001)


async def test_two_reboots_at_the_same_moment_start_one_reboot():
    gate = GatedSleep()
    h = Harness(sleep=gate.sleep)
    await h.start()
    first, second = h.client.invoke("rebootDevice"), h.client.invoke("rebootDevice")
    await h.settle()
    assert sorted([h.client.response_to(first).status, h.client.response_to(second).status]) == [200, 409]
    await gate.wait_for_sleeper(20)
    assert [s for s, _ in gate.waiting] == [20]
    await h.agent.stop()


async def test_provisioning_refused_credentials_fail_fast():
    h = Harness(settings=dps_settings("sim-009"))
    h.factory.provisioning_errors = [sdk_errors.CredentialError("401")]
    with pytest.raises(AuthenticationRefused, match="^DPS dps.example.test refused"):
        await h.start()
    assert h.factory.registrations == ["sim-009"] and h.time.sleeps == []


async def test_provisioning_refused_by_the_service_is_a_provisioning_failure():
    h = Harness(settings=dps_settings("sim-009"))
    h.factory.provisioning_errors = [sdk_errors.ServiceError("404 enrollment not found")]
    with pytest.raises(ProvisioningFailed, match="enrollment not found"):
        await h.start()


async def test_provisioning_retries_while_dps_is_unreachable():
    h = Harness(settings=dps_settings("sim-009"))
    h.factory.provisioning_errors = [sdk_errors.ConnectionFailedError("refused")] * 2
    await h.start()
    assert h.factory.registrations == ["sim-009"] * 3 and h.time.sleeps == [1, 2]
    await h.agent.stop()


async def test_a_failed_first_connect_logs_no_disconnect():
    client = FakeDeviceClient(connect_errors=[sdk_errors.CredentialError("not authorized")])
    h = Harness(client)
    client.on_connection_state_change = None

    async def refuse_and_signal():
        client.connect_calls += 1
        client.on_connection_state_change()  # the SDK reports the state before raising
        raise sdk_errors.CredentialError("not authorized")
    client.connect = refuse_and_signal
    with pytest.raises(AuthenticationRefused):
        await h.start()
    await h.agent.stop()
    await asyncio.sleep(0)
    assert not any("disconnected" in line or "connection lost" in line for line in h.lines)
