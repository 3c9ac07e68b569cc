"""Every method as a plain function: status, response payload, reported patch, follow-up."""

from datetime import datetime, timedelta, timezone

import pytest

from device import methods
from device.methods import MethodCall, MethodConfig, handle

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)
LATER = NOW + timedelta(seconds=7)
CONFIG = MethodConfig(reboot_delay=7.0, diagnostics_delay=3.0)


def call(name, payload=None, busy=()):
    return handle(MethodCall(name, payload, frozenset(busy)), NOW, CONFIG)


def test_iso_is_utc_with_z():
    assert methods.iso(NOW) == "2026-11-22T12:00:00Z"
    assert methods.iso(datetime(2026, 11, 22, 13, 0, tzinfo=timezone(timedelta(hours=1)))) == "2026-11-22T12:00:00Z"


def test_reboot_answers_at_once_and_reports_rebooting_then_running():
    result = call("rebootDevice")
    assert result.status == 200
    assert result.payload == {"Response": "Reboot started", "rebootDelaySeconds": 7.0}
    assert result.reported == {"rebootState": "rebooting", "rebootStartTime": "2026-11-22T12:00:00Z"}
    assert result.follow_up.key == methods.REBOOT_WORK and result.follow_up.delay == 7.0
    assert result.follow_up.report(LATER) == {"rebootState": "running", "rebootTime": "2026-11-22T12:00:07Z"}
    assert result.follow_up.event == "reboot finished"


def test_reboot_while_rebooting_is_a_conflict():
    result = call("rebootDevice", busy={methods.REBOOT_WORK})
    assert result.status == 409 and result.follow_up is None and result.reported is None


def test_reboot_ignores_its_payload():
    assert call("rebootDevice", {"anything": 1}).status == 200


@pytest.mark.parametrize("payload", [None, "", {}, "{}", "null"])
def test_lock_door_without_lock_time_locks_until_further_notice(payload):
    result = call("lockDoor", payload)
    assert result.status == 200
    assert result.payload == {"Response": "lockDoor called successfully"}
    assert result.reported == {"door": {"locked": True, "lockTime": "2026-11-22T12:00:00Z", "until": None,
                                        "unlockTime": None}}
    assert result.follow_up is None and result.cancels == (methods.DOOR_WORK,)


@pytest.mark.parametrize("payload,seconds", [
    ({"lockTime": "10m"}, 600), ('{"lockTime":"10m"}', 600), ({"lockTime": "30s"}, 30),
    ({"lockTime": "2h"}, 7200), ({"lockTime": 45}, 45), ({"lockTime": "1.5 min"}, 90), ({"lockTime": "1d"}, 86400),
])
def test_lock_door_with_lock_time_reports_until_and_unlocks_later(payload, seconds):
    result = call("lockDoor", payload)
    assert result.status == 200
    until = methods.iso(NOW + timedelta(seconds=seconds))
    assert result.reported["door"]["until"] == until and result.reported["door"]["locked"] is True
    assert result.follow_up.key == methods.DOOR_WORK and result.follow_up.delay == seconds
    assert result.follow_up.report(LATER) == {"door": {"locked": False, "unlockTime": "2026-11-22T12:00:07Z"}}


@pytest.mark.parametrize("payload,reason", [
    ({"lockTime": "ten minutes"}, "not a duration"),
    ({"lockTime": "-5m"}, "not a duration"),
    ({"lockTime": 0}, "more than 0"),
    ({"lockTime": "8d"}, "at most 7 days"),
    ({"lockTime": True}, "not a duration"),
    ({"lockTime": [1]}, "not a duration"),
    ({"lockTime": float("nan")}, "not a duration"),
    ({"lockTime": 1e15}, "at most 7 days"),  # would overflow timedelta
    ({"lockTime": 10 ** 400}, "at most 7 days"),  # too big for a float
    ({"lockTime": "99999999999d"}, "at most 7 days"),
    ({"lockTme": "10m"}, "unknown field 'lockTme'"),
    ([1, 2], "must be an object"),
    (42, "must be an object"),
    ("not json", "not JSON"),
    ('"10m"', "must be an object"),
])
def test_lock_door_bad_payload_is_400_with_the_reason(payload, reason):
    result = call("lockDoor", payload)
    assert result.status == 400
    assert reason in result.payload["Response"] and result.payload["Response"].startswith("Invalid payload")
    assert result.reported is None and result.follow_up is None and result.cancels == ()


def test_unknown_method_is_404():
    result = call("selfDestruct", {"now": True})
    assert (result.status, result.payload, result.reported, result.follow_up) == (
        404, {"Response": "Unknown method"}, None, None)


def test_method_names_are_case_sensitive_like_iot_hub():
    assert call("RebootDevice").status == 404


@pytest.mark.parametrize("payload,seconds", [(None, 1.0), (5, 5.0), ("5", 5.0), (2.5, 2.5), ({"interval": 3}, 3.0)])
def test_blink(payload, seconds):
    result = call("blink", payload)
    assert result.status == 200
    assert result.payload == {"result": True, "data": f"blinking LED every {seconds:g} seconds"}
    assert result.reported == {"led": {"on": True, "blinkInterval": seconds}}


@pytest.mark.parametrize("payload", ["fast", 0, -1, True, {"x": 1}, 99999])
def test_blink_bad_payload_is_400(payload):
    result = call("blink", payload)
    assert result.status == 400 and "blink interval" in result.payload["Response"]


def test_turnon_and_turnoff():
    on, off = call("turnon"), call("turnoff")
    assert (on.status, on.payload, on.reported) == (200, {"result": True, "data": "LED turned on"},
                                                     {"led": {"on": True, "blinkInterval": None}})
    assert (off.status, off.payload, off.reported) == (200, {"result": True, "data": "LED turned off"},
                                                        {"led": {"on": False, "blinkInterval": None}})


def test_rundiagnostics_is_202_then_reports_its_result():
    result = call("rundiagnostics")
    assert result.status == 202 and result.reported is None
    assert result.follow_up.delay == 3.0
    assert result.follow_up.report(LATER) == {
        "rundiagnostics": {"value": "Diagnostics run complete at 2026-11-22T12:00:07Z"}}


def test_every_listed_method_is_answered():
    for name in methods.METHOD_NAMES:
        assert call(name).status in (200, 202), name
