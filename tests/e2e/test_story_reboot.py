"""Story 1, "Get started with device management": the operator reboots a device remotely and waits
for its new rebootTime; the real device listener and service CLI as subprocesses."""

from __future__ import annotations

import pytest

from tests.e2e.stories_support import devices, reported, story_hub, suffix  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e


def test_reboot_answers_at_once_then_reports_a_new_reboot_time(story_hub, devices):
    device_id, listener = devices.main("--reboot-delay", "1", "--no-telemetry")
    before = reported(story_hub.service_json("twin", "show", device_id), "rebootTime")

    result = story_hub.service("reboot", device_id, "--poll-interval", "0.3", "--timeout", "60")

    assert result.returncode == 0, result.stderr
    assert f"Method rebootDevice on {device_id}: status 200" in result.stdout
    assert '"Response": "Reboot started"' in result.stdout
    shown = [line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("Last reboot time: ")]
    twin = story_hub.service_json("twin", "show", device_id)
    assert shown == [reported(twin, "rebootTime")] and shown[0] != before
    assert reported(twin, "rebootState") == "running"
    assert reported(twin, "rebootStartTime") <= shown[0]
    items = story_hub.service_json(
        "query", "SELECT deviceId, properties.reported.rebootState, properties.reported.rebootTime "
                 f"FROM devices WHERE deviceId = '{device_id}'")
    assert items == [{"deviceId": device_id, "rebootState": "running", "rebootTime": shown[0]}]
    log = listener.output()
    assert "method rebootDevice -> 200" in log and "reboot finished" in log


def test_a_reboot_in_progress_does_not_delay_other_methods(story_hub, devices):
    """The tutorial's handler slept 20 s and blocked everything; ours answers lockDoor meanwhile."""
    device_id, _ = devices.main("--reboot-delay", "30", "--no-telemetry")
    started = story_hub.service("reboot", device_id, "--no-wait")
    assert started.returncode == 0, started.stderr
    twin = story_hub.service_json("twin", "show", device_id)
    assert reported(twin, "rebootState") == "rebooting"

    locked = story_hub.service_json("method", "invoke", device_id, "lockDoor", "--payload", '{"lockTime": "1m"}')
    assert locked["status"] == 200 and locked["payload"] == {"Response": "lockDoor called successfully"}
    again = story_hub.service("reboot", device_id, "--no-wait")
    assert again.returncode == 7 and "status 409" in again.stderr  # already rebooting: a non-2xx answer


def test_a_method_to_an_offline_device_is_exit_5(story_hub):
    device_id = f"offline-{suffix()}"
    created = story_hub.service("device", "create", device_id)
    assert created.returncode == 0, created.stderr
    try:
        result = story_hub.service("method", "invoke", device_id, "rebootDevice")
        assert result.returncode == 5
        assert result.stderr.splitlines()[-1].startswith(f"Error: device '{device_id}' is not online")
    finally:
        story_hub.service("device", "delete", device_id)
