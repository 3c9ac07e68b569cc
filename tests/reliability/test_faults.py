"""Faults, with real processes: the emulator SIGKILLed and restarted mid-session, devices (the real
device listener, `python -m device`) killed during a job, a device too slow to answer, a device that
comes back after its desired properties changed while it was offline.

Each test starts its own emulator process on its own loopback address and data directory.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from mqttcodec import Publish
from hubsettings import wellknown
from service.cli import cli
from service.context import AppState
from tests.e2e.conftest import EmulatorProcess, free_loopback_address
from tests.e2e.support import wait_for

from .conftest import new_key
from .support import RawDevice, Rest, reply_status

pytestmark = pytest.mark.heavy

WAIT = 60.0  # generous: SDK reconnects back off, and the machine may be loaded


class DeviceProcess:
    """`python -m device` for one device, its JSON event lines collected from stdout."""

    def __init__(self, emulator: EmulatorProcess, device_id: str, key: str, log_dir: Path):
        self.device_id = device_id
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log = log_dir / f"device-{device_id}.log"
        connection_string = wellknown.device_connection_string(emulator.host_name, device_id, key)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IOTHUB_", "PROVISIONING_"))}
        env.update(PYTHONUNBUFFERED="1", IOTHUB_EMULATOR_HOME=str(log_dir / "home"))
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "device", "--connection-string", connection_string,
                 "--ca-file", str(emulator.data_dir / "certs" / "ca.pem"), "--json-logs", "--no-telemetry",
                 "--reboot-delay", "0.1", "--connect-timeout", "30"],
                cwd=log_dir, env=env, stdout=out, stderr=subprocess.STDOUT)

    def events(self) -> list[str]:
        messages = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                messages.append(json.loads(line).get("message", ""))
            except ValueError:
                messages.append(line)
        return messages

    def wait_for_event(self, fragment: str, after: int = 0, timeout: float = WAIT) -> int:
        """Index of the first event after `after` containing `fragment`."""
        def found():
            for index, message in enumerate(self.events()[after:], start=after):
                if fragment in message:
                    return index + 1
            assert self.process.poll() is None, f"the device exited:\n{self.log.read_text()}"
            return None
        return wait_for(found, timeout=timeout, what=f"{self.device_id}: '{fragment}'") - 1

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def hub(tmp_path):
    emulator = EmulatorProcess(free_loopback_address(), tmp_path / "data")
    emulator.data_dir.mkdir()
    emulator.start()
    devices: list[DeviceProcess] = []
    emulator.devices = devices
    yield emulator
    for device in devices:
        device.stop()
    emulator.stop()
    log = emulator.log.read_text()
    assert "Traceback" not in log, log


def rest_of(emulator: EmulatorProcess) -> Rest:
    return Rest(emulator.host_name, emulator.address, emulator.rest_port, str(emulator.data_dir / "certs" / "ca.pem"))


def sigkill(emulator: EmulatorProcess) -> None:
    emulator.process.send_signal(signal.SIGKILL)
    emulator.process.wait(30)


def register(rest: Rest, prefix: str = "fault") -> tuple[str, str]:
    device_id, key = f"{prefix}-{uuid.uuid4().hex[:8]}", new_key()
    response = rest.call("PUT", f"/devices/{device_id}", json_body={
        "deviceId": device_id, "authentication": {"type": "sas", "symmetricKey": {"primaryKey": key, "secondaryKey": new_key()}}})
    assert response.status_code == 200, response.text
    return device_id, key


def start_device(emulator, rest: Rest, tmp_path: Path, prefix: str = "fault") -> DeviceProcess:
    device = DeviceProcess(emulator, *register(rest, prefix), tmp_path)
    emulator.devices.append(device)
    return device


def connection_state(rest: Rest, device_id: str) -> str:
    return rest.call("GET", f"/twins/{device_id}").json()["connectionState"]


def job_request(job_id: str, device_ids: list[str], *, start_in: float = 0, connect_timeout: int = 0,
                response_timeout: int = 30) -> dict:
    start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=start_in)
    return {"jobId": job_id, "type": "scheduleDeviceMethod",
            "cloudToDeviceMethod": {"methodName": "lockDoor", "payload": {}, "responseTimeoutInSeconds": response_timeout,
                                    "connectTimeoutInSeconds": connect_timeout},
            "queryCondition": "deviceId IN [" + ", ".join(f"'{d}'" for d in device_ids) + "]",
            "startTime": start.isoformat().replace("+00:00", "Z"), "maxExecutionTimeInSeconds": 600}


def wait_for_job(rest: Rest, job_id: str, statuses=("completed", "failed", "cancelled")) -> dict:
    return wait_for(lambda: (job := rest.call("GET", f"/jobs/v2/{job_id}").json())["status"] in statuses and job,
                    timeout=WAIT, what=f"job {job_id} to end")


def device_jobs(rest: Rest, job_id: str) -> dict[str, dict]:
    rows = rest.call("POST", "/devices/query", json_body={"query": f"SELECT * FROM devices.jobs WHERE jobId = '{job_id}'"}).json()
    return {row["deviceId"]: row for row in rows}


def test_sigkill_mid_session_devices_reconnect_and_nothing_is_lost(hub, tmp_path):
    rest = rest_of(hub)
    listener = start_device(hub, rest, tmp_path)
    listener.wait_for_event("ready")
    rest.call("PATCH", f"/twins/{listener.device_id}", json_body={"tags": {"site": "paris"},
                                                                  "properties": {"desired": {"brightness": 3}}})
    seen = listener.wait_for_event("brightness")
    wait_for(lambda: "brightness" in rest.call("GET", f"/twins/{listener.device_id}").json()["properties"]["reported"],
             what="the brightness acknowledgement")
    future_job = f"future-{uuid.uuid4().hex[:6]}"
    assert rest.call("PUT", f"/jobs/v2/{future_job}", json_body=job_request(future_job, [listener.device_id],
                                                                             start_in=3600)).status_code == 200
    done_job = f"done-{uuid.uuid4().hex[:6]}"
    rest.call("PUT", f"/jobs/v2/{done_job}", json_body=job_request(done_job, [listener.device_id]))
    assert wait_for_job(rest, done_job)["status"] == "completed"
    time.sleep(1)  # the scheduler saves per-device progress in batches (0.5 s): let the last one land
    before_twin = rest.call("GET", f"/twins/{listener.device_id}").json()
    before_devices = sorted(d["deviceId"] for d in rest.call("GET", "/devices").json())
    before_jobs = {j["jobId"]: j["status"] for j in rest.call("GET", "/jobs/v2/query").json()}
    events_before = len(listener.events())

    sigkill(hub)
    listener.wait_for_event("connection lost", after=events_before)
    hub.start()
    rest = rest_of(hub)
    listener.wait_for_event("reconnected", after=events_before, timeout=WAIT)
    wait_for(lambda: connection_state(rest, listener.device_id) == "Connected", what="Connected in the twin")

    after_twin = rest.call("GET", f"/twins/{listener.device_id}").json()
    for section in ("desired", "reported"):
        strip = lambda props: {k: v for k, v in props.items() if k != "$metadata"}  # noqa: E731
        assert strip(after_twin["properties"][section]) == strip(before_twin["properties"][section])
    assert after_twin["tags"] == {"site": "paris"} and after_twin["version"] == before_twin["version"]
    assert sorted(d["deviceId"] for d in rest.call("GET", "/devices").json()) == before_devices
    after_jobs = {j["jobId"]: j["status"] for j in rest.call("GET", "/jobs/v2/query").json()}
    assert after_jobs == before_jobs and after_jobs[future_job] == "scheduled" and after_jobs[done_job] == "completed"
    assert device_jobs(rest, done_job)[listener.device_id]["status"] == "completed"
    # No spurious desired patch: the listener was told about brightness once, before the kill.
    response = rest.call("POST", f"/twins/{listener.device_id}/methods",
                         json_body={"methodName": "lockDoor", "payload": {}, "responseTimeoutInSeconds": 30})
    assert response.status_code == 200 and response.json()["status"] == 200
    assert [m for m in listener.events()[seen + 1:] if m.startswith("desired patch")] == []


def test_a_job_running_when_the_emulator_dies_ends_failed_with_a_reason(hub):
    rest = rest_of(hub)
    offline_id, _ = register(rest)  # never connects: the job waits for it (connect timeout 300 s)
    job_id = f"running-{uuid.uuid4().hex[:6]}"
    rest.call("PUT", f"/jobs/v2/{job_id}", json_body=job_request(job_id, [offline_id], connect_timeout=300))
    wait_for_job(rest, job_id, statuses=("running",))
    sigkill(hub)
    hub.start()
    job = wait_for_job(rest_of(hub), job_id)
    assert job["status"] == "failed"
    assert job["failureReason"] and "restart" in job["failureReason"].lower()


def test_a_device_result_the_hub_showed_survives_a_sigkill_mid_job(hub, tmp_path):
    """One device answers at once, another never connects (the job keeps running); the emulator is
    SIGKILLed right after a devices.jobs query showed the answer: after the restart that result stands
    (only the unanswered device ends JobInterrupted)."""
    rest = rest_of(hub)
    listener = start_device(hub, rest, tmp_path, "shown")
    listener.wait_for_event("ready")
    offline_id, _ = register(rest)
    job_id = f"shown-{uuid.uuid4().hex[:6]}"
    rest.call("PUT", f"/jobs/v2/{job_id}", json_body=job_request(job_id, [listener.device_id, offline_id],
                                                                  connect_timeout=300))
    shown = wait_for(lambda: (rows := device_jobs(rest, job_id)).get(listener.device_id, {}).get("status")
                     == "completed" and rows, timeout=WAIT, what="the listener's answer in devices.jobs")
    sigkill(hub)  # at once: well inside the scheduler's batching window
    hub.start()
    rest = rest_of(hub)
    assert wait_for_job(rest, job_id)["status"] == "failed"
    after = device_jobs(rest, job_id)
    assert after[listener.device_id]["status"] == "completed", after[listener.device_id]
    assert after[listener.device_id]["outcome"] == shown[listener.device_id]["outcome"]
    assert after[offline_id]["error"]["code"] == "JobInterrupted"


def test_a_device_killed_during_a_job_fails_device_not_online_and_the_others_succeed(hub, tmp_path):
    rest = rest_of(hub)
    listeners = [start_device(hub, rest, tmp_path, "fleet") for _ in range(3)]
    for listener in listeners:
        listener.wait_for_event("ready")
    job_id = f"fleet-{uuid.uuid4().hex[:6]}"
    ids = [listener.device_id for listener in listeners]
    assert rest.call("PUT", f"/jobs/v2/{job_id}", json_body=job_request(job_id, ids, start_in=3)).status_code == 200
    victim = listeners[1]
    victim.kill()  # SIGKILL: no goodbye; the emulator learns from the closed socket
    wait_for(lambda: connection_state(rest, victim.device_id) == "Disconnected", what="the victim offline")
    job = wait_for_job(rest, job_id)
    statuses = {device_id: row for device_id, row in device_jobs(rest, job_id).items()}
    assert statuses[victim.device_id]["status"] == "failed"
    assert "404103" in json.dumps(statuses[victim.device_id]) or "DeviceNotOnline" in json.dumps(statuses[victim.device_id])
    for survivor in (listeners[0], listeners[2]):
        assert statuses[survivor.device_id]["status"] == "completed"
    counts = job["deviceJobStatistics"]
    assert counts["deviceCount"] == 3 and counts["succeededCount"] == 2 and counts["failedCount"] == 1


METHOD_REQUEST = "$iothub/methods/POST/"


def is_method_request(packet) -> bool:
    return isinstance(packet, Publish) and packet.topic.startswith(METHOD_REQUEST)


async def method_device(emulator, prefix: str) -> tuple[str, RawDevice]:
    """A raw device, connected and subscribed to method requests (SUBACK received)."""
    device_id, key = emulator.add_device(prefix)
    device = await RawDevice.connected(emulator, device_id, key, subscribe=(METHOD_REQUEST + "#",))
    return device_id, device


async def answer_methods(device: RawDevice) -> None:
    """Answer every method request 200 with the method's name, until the connection closes."""
    while (request := await device.expect(is_method_request, timeout=3600)) is not None:
        name, rid = request.topic[len(METHOD_REQUEST):].split("/")[0], request.topic.split("$rid=")[1]
        device.publish(f"$iothub/methods/res/200/?$rid={rid}", json.dumps({"answered": name}).encode())


async def test_a_device_killed_while_its_method_call_is_in_flight_fails_its_device_job(emulator):
    """The harder case: the request reaches the device, which dies before answering (a raw
    device, killed without a DISCONNECT). Its device job fails with GatewayTimeout once the job's
    responseTimeoutInSeconds has passed (the emulator does not fail the call when the connection
    drops); the other devices answer and succeed; the job completes. (Uses the module's threaded
    emulator.)"""
    loop = asyncio.get_running_loop()
    rest = emulator.rest()

    def blocking(function, *args):  # REST calls off the loop: the answering devices run on it
        return loop.run_in_executor(None, function, *args)

    victim_id, victim = await method_device(emulator, "inflight")
    answering = [await method_device(emulator, "answers") for _ in range(2)]
    answerers = [asyncio.create_task(answer_methods(device)) for _, device in answering]
    ids = [victim_id] + [device_id for device_id, _ in answering]
    response_timeout = 5  # IoT Hub's minimum: the victim's call can only end at this deadline
    job_id = f"inflight-{uuid.uuid4().hex[:6]}"
    try:
        response = await blocking(lambda: rest.call(
            "PUT", f"/jobs/v2/{job_id}", json_body=job_request(job_id, ids, response_timeout=response_timeout)))
        assert response.status_code == 200, response.text
        request = await victim.expect(is_method_request)
        assert request is not None and request.topic.startswith(METHOD_REQUEST + "lockDoor/")
        victim.kill()  # the call is in flight: delivered, not answered
        killed_at = time.monotonic()
        await blocking(lambda: wait_for(lambda: connection_state(rest, victim_id) == "Disconnected",
                                        what="the emulator to see the victim gone"))
        job = await blocking(wait_for_job, rest, job_id)
        ended_after = time.monotonic() - killed_at

        assert job["status"] == "completed", job
        counts = job["deviceJobStatistics"]
        assert (counts["deviceCount"], counts["succeededCount"], counts["failedCount"]) == (3, 2, 1), counts
        rows = device_jobs(rest, job_id)
        failed = rows[victim_id]
        assert failed["status"] == "failed", failed
        # The emulator's answer for a request delivered and never answered, whether or not the device
        # is still there: 504101 GatewayTimeout at the response timeout (not 404103: it was online).
        assert failed["error"]["code"] == "GatewayTimeout", failed
        assert victim_id in failed["error"]["description"] and "response" in failed["error"]["description"]
        assert "outcome" not in failed
        # Not before the deadline: the emulator waits out responseTimeoutInSeconds although the device
        # has gone (an upper bound would be a timing assert).
        assert ended_after >= response_timeout - 1.0
        for device_id, _ in answering:
            assert rows[device_id]["status"] == "completed", rows[device_id]
            assert rows[device_id]["outcome"] == {"deviceMethodResponse": {"status": 200,
                                                                           "payload": {"answered": "lockDoor"}}}
        # Each device got the request exactly once: a killed device's call is not sent elsewhere or twice.
        for _, device in answering:
            assert not [p for p in device.packets if is_method_request(p)]
    finally:
        for task in answerers:
            task.cancel()
        for _, device in answering:
            await device.close()
        await victim.close()


async def test_a_slow_device_gets_504_at_the_requested_timeout(emulator, monkeypatch, tmp_path):
    """A device that takes the request and never answers: REST 504101 after responseTimeoutInSeconds,
    and the service CLI exits 6 with one line. (Uses the module's threaded emulator.)"""
    device_id, key = emulator.add_device("slow")
    device = await RawDevice.connected(emulator, device_id, key)
    for name in ("IOTHUB_CONNECTION_STRING", "IOTHUB_CA_FILE", "IOTHUB_EMULATOR_DISCOVERY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IOTHUB_EMULATOR_HOME", str(tmp_path))
    try:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        response = await loop.run_in_executor(None, lambda: emulator.rest().call(
            "POST", f"/twins/{device_id}/methods",
            json_body={"methodName": "slow", "payload": {}, "responseTimeoutInSeconds": 5}))
        elapsed = time.monotonic() - started
        assert response.status_code == 504 and json.loads(response.json()["Message"])["errorCode"] == 504101
        assert elapsed >= 4.9  # not before the requested timeout (an upper bound would be a timing assert)
        state = AppState(connection_string=wellknown.service_connection_string(emulator.host_name, emulator.rest_port),
                         ca_file=emulator.ca_file)
        result = await loop.run_in_executor(None, lambda: CliRunner().invoke(
            cli, ["method", "invoke", device_id, "slow", "--response-timeout", "5"], obj=state))
        assert result.exit_code == 6, result.output
        assert "did not answer method 'slow' in time" in result.output and "Traceback" not in result.output
        requests_seen = [p for p in device.packets if getattr(p, "topic", "").startswith("$iothub/methods/POST/slow/")]
        assert len(requests_seen) == 2  # each call reached the device exactly once
    finally:
        await device.close()


def test_a_device_back_after_desired_changes_made_offline_applies_them(hub, tmp_path):
    rest = rest_of(hub)
    first = start_device(hub, rest, tmp_path)
    first.wait_for_event("ready")
    first.stop()
    wait_for(lambda: connection_state(rest, first.device_id) == "Disconnected", what="the device offline")
    for patch in ({"brightness": 5}, {"building": "b42"}, {"brightness": 8, "floor": 3}):
        assert rest.call("PATCH", f"/twins/{first.device_id}", json_body={"properties": {"desired": patch}}).status_code == 200
    desired_version = rest.call("GET", f"/twins/{first.device_id}").json()["properties"]["desired"]["$version"]

    again = DeviceProcess(hub, first.device_id, _key_of(rest, first.device_id), tmp_path / "again")
    hub.devices.append(again)

    def acknowledged():
        reported = rest.call("GET", f"/twins/{first.device_id}").json()["properties"]["reported"]
        return all(reported.get(name, {}).get("av") == desired_version for name in ("brightness", "building", "floor")) and reported
    reported = wait_for(acknowledged, timeout=WAIT, what="the offline changes acknowledged")
    assert reported["brightness"]["value"] == 8 and reported["building"]["value"] == "b42" and reported["floor"]["value"] == 3
    assert all(reported[name]["ac"] == 200 for name in ("brightness", "building", "floor"))


def _key_of(rest: Rest, device_id: str) -> str:
    return rest.call("GET", f"/devices/{device_id}").json()["authentication"]["symmetricKey"]["primaryKey"]


# ---- SIGKILL with work in flight ---------------------------------------------------------------------

IN_FLIGHT_DEVICES = 12
LOAD_BEFORE_KILL_S = 1.5


class InFlightDevice:
    """A raw device patching its reported properties one after another ({"seq": n, "copy": n}, so a
    half-applied patch would show), sending telemetry and answering methods until the emulator dies.
    `acknowledged` is the last seq the hub PUBACKed."""

    def __init__(self, device_id: str, device: RawDevice):
        self.device_id, self.device = device_id, device
        self.acknowledged = 0

    async def run(self) -> None:
        device, seq = self.device, 0
        while not device.closed:
            seq += 1
            packet_id = device.packet_id()
            device.send(Publish(f"$iothub/twin/PATCH/properties/reported/?$rid=r{seq}",
                                json.dumps({"seq": seq, "copy": seq}).encode(), 1, packet_id))
            device.publish(f"devices/{self.device_id}/messages/events/", f"t{seq}".encode())
            for request in [p for p in device.packets if is_method_request(p)]:
                device.packets.remove(request)
                device.publish(f"$iothub/methods/res/200/?$rid={request.topic.split('$rid=')[1]}", b"{}")
            if not await device.acknowledged(packet_id, timeout=WAIT):
                return
            self.acknowledged = seq


def patch_desired_until_refused(rest: Rest, device_id: str, acknowledged: dict[str, int]) -> None:
    """Desired patches {"seq": n, "copy": n} one after another; records the last one answered 2xx."""
    seq = 0
    while True:
        seq += 1
        try:
            response = rest.call("PATCH", f"/twins/{device_id}", timeout=10,
                                 json_body={"properties": {"desired": {"seq": seq, "copy": seq}}})
        except OSError:  # requests' ConnectionError: the emulator is gone
            return
        if response.status_code >= 300:
            return
        acknowledged[device_id] = seq


def invoke_until_refused(rest: Rest, device_id: str) -> None:
    while True:
        try:
            rest.call("POST", f"/twins/{device_id}/methods", timeout=10,
                      json_body={"methodName": "inflight", "payload": {}, "responseTimeoutInSeconds": 5})
        except OSError:
            return


async def test_sigkill_with_patches_methods_and_telemetry_in_flight_loses_nothing_acknowledged(hub):
    """Devices patch reported properties and send telemetry, the service patches desired properties and
    calls methods, all at once; the emulator is SIGKILLed mid-flight and restarted. Every reported patch
    the hub PUBACKed and every desired patch it answered 2xx is in the twin; no patch is half-applied
    (seq and copy always agree); versions count exactly the patches applied; no method runs again."""
    loop = asyncio.get_running_loop()
    rest = rest_of(hub)
    registered = [register(rest, "inflight") for _ in range(IN_FLIGHT_DEVICES)]
    devices = [InFlightDevice(device_id, await RawDevice.connected(hub, device_id, key, clean_session=False))
               for device_id, key in registered]
    desired_acknowledged: dict[str, int] = {}
    service = ThreadPoolExecutor(max_workers=IN_FLIGHT_DEVICES)  # one blocking REST client per device
    patchers = [loop.run_in_executor(service, patch_desired_until_refused, rest_of(hub), device.device_id,
                                     desired_acknowledged) for device in devices[: IN_FLIGHT_DEVICES // 2]]
    callers = [loop.run_in_executor(service, invoke_until_refused, rest_of(hub), device.device_id)
               for device in devices[IN_FLIGHT_DEVICES // 2:]]
    runs = [asyncio.create_task(device.run()) for device in devices]
    await asyncio.sleep(LOAD_BEFORE_KILL_S)
    sigkill(hub)
    await asyncio.gather(*runs, *patchers, *callers)
    service.shutdown()
    for device in devices:
        await device.device.close()
    print(f"\nIN FLIGHT AT THE KILL: reported patches PUBACKed {sum(d.acknowledged for d in devices)}, "
          f"desired patches answered 2xx {sum(desired_acknowledged.values())}")
    assert all(device.acknowledged > 0 for device in devices)  # the load was real
    assert desired_acknowledged and all(seq > 0 for seq in desired_acknowledged.values())

    hub.start()
    rest = rest_of(hub)
    for device in devices:
        twin = rest.call("GET", f"/twins/{device.device_id}").json()
        reported, desired = twin["properties"]["reported"], twin["properties"]["desired"]
        assert reported["seq"] >= device.acknowledged, (device.device_id, reported, device.acknowledged)
        assert reported["copy"] == reported["seq"] and reported["$version"] == 1 + reported["seq"], reported
        if device.device_id in desired_acknowledged:
            assert desired["seq"] >= desired_acknowledged[device.device_id], (device.device_id, desired)
            assert desired["copy"] == desired["seq"] and desired["$version"] == 1 + desired["seq"], desired
    # Back on their sessions, the devices get no method request again (a method never runs twice).
    for device_id, key in registered[IN_FLIGHT_DEVICES // 2:]:
        again = await RawDevice.connected(hub, device_id, key, clean_session=False)
        try:
            reply = await again.expect_reply(again.twin_get())
            assert reply is not None and reply_status(reply) == 200
            assert not [p for p in again.packets if is_method_request(p)], device_id
        finally:
            await again.close()


def test_an_sdk_device_reconnects_by_itself_and_rereads_desired_changes_made_while_away(hub):
    """azure-iot-device's own client, never restarted: the emulator is SIGKILLed, comes back on another
    MQTT port while three desired changes are made (the device cannot reach it: it is away), then returns
    on its own port. The client reconnects by itself, re-reads its twin, and hands the whole changed
    desired document to its handler (the SDK does that when desired.$version moved)."""
    from azure.iot.device import IoTHubDeviceClient  # the SDK is a test dependency; import only here

    rest = rest_of(hub)
    device_id, key = register(rest, "sdk")
    assert rest.call("PATCH", f"/twins/{device_id}",
                     json_body={"properties": {"desired": {"brightness": 1}}}).status_code == 200
    client = IoTHubDeviceClient.create_from_connection_string(
        wellknown.device_connection_string(hub.host_name, device_id, key), server_verification_cert=hub.ca_pem,
        connection_retry_interval=1)
    deliveries: list[dict] = []
    client.on_twin_desired_properties_patch_received = deliveries.append
    try:
        client.connect()
        wait_for(lambda: deliveries, what="the desired document after connecting")
        sigkill(hub)
        wait_for(lambda: not client.connected, what="the client to notice the emulator died")

        hub.extra_args = ("--mqtt-port", str(AWAY_MQTT_PORT))
        hub.start()
        rest = rest_of(hub)
        for patch in ({"brightness": 5}, {"building": "b42"}, {"brightness": 8, "floor": 3}):
            response = rest.call("PATCH", f"/twins/{device_id}", json_body={"properties": {"desired": patch}})
            assert response.status_code == 200, response.text
        changed = rest.call("GET", f"/twins/{device_id}").json()["properties"]["desired"]["$version"]
        assert not client.connected
        assert hub.stop() == 0
        hub.extra_args = ()
        delivered_before = len(deliveries)
        hub.start()

        wait_for(lambda: client.connected, timeout=WAIT, what="the client to reconnect by itself")
        wait_for(lambda: any(d.get("$version") == changed for d in deliveries[delivered_before:]),
                 timeout=WAIT, what="the changed desired document handed to the handler")
        reread = next(d for d in deliveries[delivered_before:] if d.get("$version") == changed)
        assert {k: reread.get(k) for k in ("brightness", "building", "floor")} == {
            "brightness": 8, "building": "b42", "floor": 3}
        client.patch_twin_reported_properties({"brightness": 8})  # the reconnected client is fully usable
        assert rest.call("GET", f"/twins/{device_id}").json()["properties"]["reported"]["brightness"] == 8
    finally:
        client.shutdown()


AWAY_MQTT_PORT = 18883  # on the test's own loopback address: the devices only know 8883
