"""Story 3, "Connect a Python client to IoT Central": a device provisioned through DPS sends
telemetry that the hub receives, answers blink/turnon/turnoff/rundiagnostics, and acknowledges the
writable properties name and brightness."""

from __future__ import annotations


import pytest

from tests.e2e.stories_support import (devices, reported, story_hub, suffix, wait_for,  # noqa: F401
                                       wait_for_twin)

pytestmark = pytest.mark.e2e


def _readings(messages):
    return [m for m in messages if isinstance(m.get("body"), dict) and "temperature" in m["body"]]


def test_iot_central_sensor(story_hub, devices):
    sensor = f"sensor-{suffix()}"
    listener = devices.dps(sensor, "--telemetry-interval", "0.5", "--diagnostics-delay", "1")
    assert "provisioned: assigned to" in listener.output() and f"as {sensor}" in listener.output()
    identity = story_hub.service_json("device", "show", sensor)
    assert identity["deviceId"] == sensor and identity["status"] == "enabled"
    assert identity["connectionState"] == "Connected"

    # Telemetry: sent by the device (the hub's PUBACK) and read from the Event Hubs-compatible endpoint.
    wait_for(lambda: listener.output().count(" telemetry temperature=") >= 2, what="telemetry sent")
    messages = _readings(story_hub.received_telemetry(sensor))
    assert len(messages) == 2 and all(m["deviceId"] == sensor for m in messages)
    assert set(messages[-1]["body"]) == {"temperature", "humidity"}
    assert messages[-1]["systemProperties"].get("content-type") == "application/json"
    assert messages[-1]["systemProperties"].get("content-encoding") == "utf-8"

    # The IoT Central commands.
    blink = story_hub.service_json("method", "invoke", sensor, "blink", "--payload", "2")
    assert blink == {"deviceId": sensor, "methodName": "blink", "status": 200,
                     "payload": {"result": True, "data": "blinking LED every 2 seconds"}}
    assert story_hub.service_json("method", "invoke", sensor, "turnon")["status"] == 200
    off = story_hub.service_json("method", "invoke", sensor, "turnoff")
    assert off["status"] == 200 and off["payload"]["data"] == "LED turned off"
    diagnostics = story_hub.service_json("method", "invoke", sensor, "rundiagnostics")
    assert diagnostics["status"] == 202
    waited = story_hub.service("twin", "wait", sensor, "--reported", "rundiagnostics.value", "--timeout", "30",
                               "--poll-interval", "0.3")
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.startswith("rundiagnostics.value = Diagnostics run complete at ")
    # null in a reported patch deletes the key (twin semantics): blinkInterval is gone
    assert reported(story_hub.service_json("twin", "show", sensor), "led") == {"on": False}

    # Writable properties: applied and acknowledged with the desired $version; a bad value gets 400.
    update = story_hub.service_json("twin", "update", sensor, "--desired",
                                    '{"name": "Kitchen sensor", "brightness": 80}')
    version = update["properties"]["desired"]["$version"]
    waited = story_hub.service("twin", "wait", sensor, "--reported", "brightness.av", "--equals", str(version),
                               "--timeout", "30", "--poll-interval", "0.3")
    assert waited.returncode == 0, waited.stderr
    twin = wait_for_twin(story_hub, sensor, lambda t: reported(t, "name.av") == version, "name acknowledged")
    assert reported(twin, "name") == {"value": "Kitchen sensor", "ac": 200, "ad": "completed", "av": version}
    assert reported(twin, "brightness") == {"value": 80, "ac": 200, "ad": "completed", "av": version}

    bad = story_hub.service_json("twin", "update", sensor, "--desired", '{"brightness": "very bright"}')
    bad_version = bad["properties"]["desired"]["$version"]
    twin = wait_for_twin(story_hub, sensor, lambda t: reported(t, "brightness.av") == bad_version,
                         "the bad brightness acknowledged")
    assert reported(twin, "brightness.ac") == 400
    assert "brightness must be a number" in reported(twin, "brightness.ad")
