from __future__ import annotations

import pytest

from .fakes import http_error, twin_json


@pytest.fixture
def twin(fake_hub):
    fake_hub.set_twins("d1", twin_json("d1", reported={"rebootState": "running", "fw": {"version": "1.0"}},
                                       desired={"telemetryInterval": 10}, tags={"site": "paris"}))


def test_twin_show_human(run, twin):
    result = run("twin", "show", "d1")
    assert result.exit_code == 0
    out = result.stdout
    assert "Device:" in out and "d1" in out and "Connected" in out
    assert '"site": "paris"' in out and '"telemetryInterval": 10' in out and '"rebootState": "running"' in out
    assert "$metadata" not in out


def test_twin_show_json_is_the_hub_shape(run, twin):
    data = run.json("twin", "show", "d1")
    assert data["deviceId"] == "d1" and data["etag"] == "AAAAAAAAAAE=" and data["version"] == 2
    assert data["properties"]["reported"]["fw"] == {"version": "1.0"}
    assert "$metadata" in data["properties"]["desired"]
    assert data["lastActivityTime"].startswith("2026-11-22T09:00:00")


def test_twin_update_desired_and_tags_with_null_deleting(run, fake_hub, twin):
    result = run("twin", "update", "d1", "--desired", '{"telemetryInterval": null, "x": 1}',
                 "--tags", '{"site": "lyon"}')
    assert result.exit_code == 0, result.output
    (device_id, patch, etag), = fake_hub.calls_to("update_twin")
    assert patch == {"tags": {"site": "lyon"}, "properties": {"desired": {"telemetryInterval": None, "x": 1}}}
    assert etag is None  # the SDK turns it into If-Match: "*"
    assert "Updated twin of d1" in result.stdout


def test_twin_update_only_tags_sends_no_properties(run, fake_hub, twin):
    assert run("twin", "update", "d1", "--tags", '{"a": 1}').exit_code == 0
    (_, patch, _), = fake_hub.calls_to("update_twin")
    assert patch == {"tags": {"a": 1}}


def test_twin_update_with_etag_and_json(run, fake_hub, twin):
    data = run.json("twin", "update", "d1", "--desired", '{"a": 1}', "--etag", "AAAAAAAAAAE=")
    assert fake_hub.calls_to("update_twin")[0][2] == "AAAAAAAAAAE="
    assert data["properties"]["desired"]["a"] == 1


def test_twin_update_etag_mismatch_exit_8(run, fake_hub, twin):
    fake_hub.fail("update_twin", http_error(412, {"Message": "ErrorCode:PreconditionFailed;etag mismatch"}))
    result = run("twin", "update", "d1", "--desired", '{"a": 1}', "--etag", "stale")
    assert result.exit_code == 8
    assert result.stderr.startswith("Error: etag mismatch: the twin of device 'd1' changed")


@pytest.mark.parametrize("args,message", [
    ((), "Error: give --desired and/or --tags"),
    (("--desired", "[1]"), "Error: --desired must be a JSON object"),
    (("--tags", "{"), "Error: --tags is not valid JSON"),
    (("--desired", "{}", "--tags", "nope"), "Error: --tags is not valid JSON"),
])
def test_twin_update_bad_input_fails_before_network(run, fake_hub, args, message):
    result = run("twin", "update", "d1", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert fake_hub.calls == []


def test_twin_wait_equals_text_value(run, fake_hub, clock):
    fake_hub.set_twins("d1", twin_json("d1", reported={"rebootState": "rebooting"}),
                       twin_json("d1", reported={"rebootState": "rebooting"}),
                       twin_json("d1", reported={"rebootState": "running"}))
    result = run("twin", "wait", "d1", "--reported", "rebootState", "--equals", "running")
    assert result.exit_code == 0
    assert result.stdout.strip() == "rebootState = running"
    assert clock.sleeps == [0.25, 0.5]


def test_twin_wait_equals_json_value_at_nested_path(run, fake_hub):
    fake_hub.set_twins("d1", twin_json("d1", reported={"fw": {"progress": 50}}),
                       twin_json("d1", reported={"fw": {"progress": 100}}))
    data = run.json("twin", "wait", "d1", "--reported", "fw.progress", "--equals", "100")
    assert data == {"deviceId": "d1", "path": "fw.progress", "value": 100, "previous": None}


def test_twin_wait_changes(run, fake_hub):
    fake_hub.set_twins("d1", twin_json("d1", reported={"n": 1}), twin_json("d1", reported={"n": 1}),
                       twin_json("d1", reported={"n": 2}))
    data = run.json("twin", "wait", "d1", "--reported", "n", "--changes")
    assert data["previous"] == 1 and data["value"] == 2


def test_twin_wait_without_condition_waits_for_presence(run, fake_hub):
    fake_hub.set_twins("d1", twin_json("d1"), twin_json("d1", reported={"n": 0}))
    data = run.json("twin", "wait", "d1", "--reported", "n")
    assert data["value"] == 0


def test_twin_wait_timeout_exit_14(run, fake_hub, clock):
    fake_hub.set_twins("d1", twin_json("d1", reported={"rebootState": "rebooting"}))
    result = run("twin", "wait", "d1", "--reported", "rebootState", "--equals", "running", "--timeout", "3")
    assert result.exit_code == 14
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: reported rebootState of device 'd1' did not equal running within 3 s (last value: \"rebooting\")")
    assert sum(clock.sleeps) == pytest.approx(3)


@pytest.mark.parametrize("args,twin_reported,message", [
    # No condition: the property never showed up (was "did not be reported ... (last value None)").
    (("--reported", "fw.version"), {},
     "did not appear within 2 s (last value: not reported)"),
    # Values are shown as the twin's JSON, not as Python reprs (True, None, 'x').
    (("--reported", "door.locked", "--equals", "false"), {"door": {"locked": True}},
     "did not equal false within 2 s (last value: true)"),
    (("--reported", "door.locked", "--changes"), {"door": {"locked": True}},
     "did not change from true within 2 s (last value: true)"),
])
def test_twin_wait_timeout_messages_read_as_json(run, fake_hub, args, twin_reported, message):
    fake_hub.set_twins("d1", twin_json("d1", reported=twin_reported))
    result = run("twin", "wait", "d1", *args, "--timeout", "2")
    assert result.exit_code == 14
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: reported ") and last.endswith(message), last
    assert "None" not in last and "True" not in last


def test_twin_wait_equals_and_changes_together_is_usage_error(run, fake_hub):
    result = run("twin", "wait", "d1", "--reported", "x", "--equals", "1", "--changes")
    assert result.exit_code == 2 and fake_hub.calls == []


def test_twin_wait_needs_reported(run):
    assert run("twin", "wait", "d1").exit_code == 2
