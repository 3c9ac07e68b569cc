from __future__ import annotations

import json

from .fakes import twin_json

OLD, NEW = "2026-11-22T08:00:00Z", "2026-11-22T09:00:07Z"


def rebooting_twins(polls_before_change: int):
    """First read (before the method), then N reads still old, then the new rebootTime."""
    before = twin_json("d1", reported={"rebootTime": OLD, "rebootState": "running"})
    rebooting = twin_json("d1", reported={"rebootTime": OLD, "rebootState": "rebooting"})
    after = twin_json("d1", reported={"rebootTime": NEW, "rebootState": "running"})
    return [before] + [rebooting] * polls_before_change + [after]


def test_reboot_waits_until_reported_reboot_time_changes(run, fake_hub, clock):
    fake_hub.set_twins("d1", *rebooting_twins(4))
    fake_hub.method_results[("d1", "rebootDevice")] = {"status": 200, "payload": "Rebooting"}
    result = run("reboot", "d1")
    assert result.exit_code == 0, result.output
    assert "Method rebootDevice on d1: status 200" in result.stdout
    assert result.stdout.strip().endswith(f"Last reboot time: {NEW}")
    # the twin was read once before invoking, then polled until the change (4 old + 1 new)
    names = [name for name, _ in fake_hub.calls]
    assert names[:2] == ["get_twin", "invoke_device_method"]
    assert names.count("get_twin") == 6
    # polling starts fast and backs off, capped by --poll-interval
    assert clock.sleeps == [0.25, 0.5, 1.0, 2.0]
    assert "Waiting for d1" in result.stderr


def test_poll_interval_caps_the_backoff(run, fake_hub, clock):
    fake_hub.set_twins("d1", *rebooting_twins(5))
    assert run("reboot", "d1", "--poll-interval", "1").exit_code == 0
    assert len(fake_hub.calls_to("get_twin")) == 7
    assert clock.sleeps == [0.25, 0.5, 1.0, 1.0, 1.0]


def test_reboot_json_shape(run, fake_hub):
    fake_hub.set_twins("d1", *rebooting_twins(1))
    fake_hub.method_results[("d1", "rebootDevice")] = {"status": 200, "payload": {"ok": 1}}
    data = run.json("reboot", "d1")
    assert data == {"deviceId": "d1", "method": {"status": 200, "payload": {"ok": 1}},
                    "previousRebootTime": OLD, "rebootTime": NEW, "rebootState": "running", "waited": True}


def test_reboot_of_a_device_that_never_reported_a_reboot_time(run, fake_hub):
    fake_hub.set_twins("d1", twin_json("d1"), twin_json("d1"),
                       twin_json("d1", reported={"rebootTime": NEW}))
    result = run("reboot", "d1")
    assert result.exit_code == 0
    assert f"Last reboot time: {NEW}" in result.stdout


def test_reboot_times_out_with_exit_14(run, fake_hub, clock):
    fake_hub.set_twins("d1", *rebooting_twins(1000))
    result = run("reboot", "d1", "--timeout", "10", "--poll-interval", "2")
    assert result.exit_code == 14
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: device 'd1' reported no new rebootTime within 10 s (still '{OLD}', rebootState 'rebooting')")
    assert sum(clock.sleeps) == 10  # never sleeps past the deadline
    assert "Last reboot time" not in result.stdout


def test_no_wait_returns_after_the_method(run, fake_hub, clock):
    fake_hub.set_twins("d1", *rebooting_twins(3))
    data = run.json("reboot", "d1", "--no-wait")
    assert data["waited"] is False and data["rebootTime"] is None and data["previousRebootTime"] == OLD
    assert [name for name, _ in fake_hub.calls] == ["get_twin", "invoke_device_method"]
    assert clock.sleeps == []


def test_reboot_refused_by_the_device_does_not_wait(run, fake_hub):
    fake_hub.set_twins("d1", *rebooting_twins(3))
    fake_hub.method_results[("d1", "rebootDevice")] = {"status": 404, "payload": "no such method"}
    result = run("reboot", "d1", "--json")
    assert result.exit_code == 7
    assert json.loads(result.stdout)["method"]["status"] == 404
    assert len(fake_hub.calls_to("get_twin")) == 1


def test_reboot_of_unknown_device(run, fake_hub):
    result = run("reboot", "ghost")
    assert result.exit_code == 4
    assert result.stderr.strip() == "Error: device 'ghost' not found on hub testhub.azure-devices.net"
    assert fake_hub.calls_to("invoke_device_method") == []


def test_spinner_only_on_a_terminal_output_stays_clean(run, fake_hub):
    fake_hub.set_twins("d1", *rebooting_twins(2))
    result = run("reboot", "d1")
    assert "\x1b[" not in result.output  # no escape codes when not a TTY


def test_on_a_terminal_a_spinner_runs_and_the_result_is_printed(run, fake_hub):
    fake_hub.set_twins("d1", *rebooting_twins(2))
    result = run("reboot", "d1", tty=True)
    assert result.exit_code == 0, result.output
    assert f"Last reboot time: {NEW}" in result.stdout
    assert "Waiting for d1" not in result.stdout  # progress goes to stderr, never into the result
