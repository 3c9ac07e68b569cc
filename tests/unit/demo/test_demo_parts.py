"""The demo's parts without an emulator: child processes, addresses, environment, output, checks.
(The whole demo runs in tests/e2e/test_story_demo.py.)"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from demo import cli as demo_module
from demo.processes import (ChildProcess, ProcessFailed, child_env, free_loopback_address,
                                    stop_all)
from demo.steps import CommandResult, LogFollower, StepFailed, Steps, display
from demo.stories import _all_acknowledged

PY = sys.executable
WELL_BEHAVED = ("import signal, sys, time\n"
                "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
                "print('ready; press Ctrl-C to stop', flush=True)\n"
                "time.sleep(60)\n")


def child(tmp_path: Path, code: str, name: str = "child") -> ChildProcess:
    return ChildProcess(name, [PY, "-c", code], tmp_path / f"{name}.log", {"PATH": "/usr/bin:/bin"}, tmp_path)


def test_display_reads_as_typed():
    assert display(["query", "SELECT * FROM devices WHERE deviceId = 'a'"]) == \
        """iothub-service query "SELECT * FROM devices WHERE deviceId = 'a'\""""
    assert display(["twin", "update", "d1", "--tags", '{"site": "lab"}']) == \
        """iothub-service twin update d1 --tags '{"site": "lab"}'"""
    assert display(["x", """it's "quoted" $HOME"""]) == """iothub-service x 'it'"'"'s "quoted" $HOME'"""


def test_child_env_drops_every_hub_setting_and_names_the_discovery_file(tmp_path):
    user = {"PATH": "/bin", "IOTHUB_CONNECTION_STRING": "HostName=real.azure-devices.net;...",
            "IOTHUB_DEVICE_CONNECTION_STRING": "x", "PROVISIONING_IDSCOPE": "0ne1", "IOTHUB_CA_FILE": "/ca",
            "IOTHUB_EMULATOR_DISCOVERY": "/home/me/.iothub-emulator/discovery.json", "SSL_CERT_FILE": "/x"}
    env = child_env(tmp_path / "discovery.json", user)
    assert env == {"PATH": "/bin", "IOTHUB_EMULATOR_DISCOVERY": str(tmp_path / "discovery.json"),
                   "PYTHONUNBUFFERED": "1"}


class ScriptedRandom:
    def __init__(self, order: list[int]):
        self.order = order

    def sample(self, population, k):
        return self.order[:k]


def test_free_loopback_address_skips_one_whose_port_is_taken():
    with socket.socket() as taken:
        taken.bind(("127.0.0.201", 0))
        taken.listen()
        port = taken.getsockname()[1]
        address = free_loopback_address(ports=(port,), rng=ScriptedRandom([201, 202]), tries=2)
    assert address == "127.0.0.202"


def test_free_loopback_address_gives_up_with_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.203", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ProcessFailed, match=r"no loopback address 127.0.0.X with ports \d+ free"):
            free_loopback_address(ports=(port,), rng=ScriptedRandom([203]), tries=1)


def test_child_process_waits_for_its_line_and_stops_cleanly(tmp_path):
    running = child(tmp_path, WELL_BEHAVED).start()
    running.wait_for_line("press Ctrl-C to stop", timeout=30)
    assert running.running()
    assert running.stop() == 0
    assert not running.running()


def test_a_child_that_exits_early_fails_with_its_output(tmp_path):
    failing = child(tmp_path, "print('Error: address in use'); raise SystemExit(3)").start()
    with pytest.raises(ProcessFailed, match="exited with code 3 before 'ready'") as error:
        failing.wait_for_line("ready", timeout=30)
    assert "Error: address in use" in str(error.value)


def test_a_child_that_ignores_sigterm_is_killed(tmp_path):
    stubborn = child(tmp_path, "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                               "print('ready', flush=True)\ntime.sleep(60)\n").start()
    stubborn.wait_for_line("ready", timeout=30)
    assert stop_all([stubborn], timeout=0.5) == {"child": -9}


def test_log_follower_shows_only_new_lines(tmp_path):
    log = tmp_path / "d.log"
    log.write_text("old line\n")
    follower = LogFollower([ChildProcess("d", [], log, {}, tmp_path)])
    assert follower.new_lines() == []
    with open(log, "a") as f:
        f.write("12:00:00 d method lockDoor -> 200\n12:00:01 d telemetry temperature=21\n")
    assert follower.new_lines(lambda line: "telemetry" not in line) == [("d", "12:00:00 d method lockDoor -> 200")]
    assert follower.new_lines() == []


def steps_for(tmp_path: Path, expected_hub: str = "Using IoT hub 127.0.0.9:9443 ") -> Steps:
    lines: list[str] = []
    steps = Steps(env={}, cwd=tmp_path, devices=LogFollower([]), echo=lines.append, expected_hub=expected_hub)
    steps.lines = lines  # type: ignore[attr-defined]
    return steps


def test_a_command_that_uses_another_hub_fails_the_step(tmp_path):
    steps = steps_for(tmp_path)
    ours = CommandResult(("twin", "show", "d"), 0, "", "Using IoT hub 127.0.0.9:9443 with policy iothubowner (...)\n")
    steps._check_hub(ours, ours.stderr)
    theirs = CommandResult(("twin", "show", "d"), 0, "",
                           "Using IoT hub real.azure-devices.net with policy iothubowner (from .env (/x/.env))\n")
    with pytest.raises(StepFailed, match="did not use the demo's emulator"):
        steps._check_hub(theirs, theirs.stderr)
    json_mode = CommandResult(("twin", "show", "d", "--json"), 0, "{}", "")
    steps._check_hub(json_mode, "")  # --json prints no hub line


def test_the_hub_line_is_shown_once(tmp_path):
    steps = steps_for(tmp_path)
    first = CommandResult(("a",), 0, "Using IoT hub 127.0.0.9:9443 with policy p (x)\nresult 1\n", "")
    second = CommandResult(("b",), 0, "Using IoT hub 127.0.0.9:9443 with policy p (x)\nresult 2\n", "")
    assert steps._visible_lines(first) == ["Using IoT hub 127.0.0.9:9443 with policy p (x)", "result 1"]
    assert steps._visible_lines(second) == ["result 2"]


def test_acknowledgements_must_be_200_for_every_selected_device(tmp_path):
    steps = steps_for(tmp_path)
    ack = {"value": 43, "ac": 200, "ad": "completed", "av": 2}
    floor = {"value": 3, "ac": 200, "ad": "completed", "av": 2}
    answers = iter([[{"deviceId": "a", "building": ack, "floor": floor},
                     {"deviceId": "b", "building": {**ack, "ac": 400}, "floor": floor}],
                    [{"deviceId": "a", "building": ack, "floor": floor},
                     {"deviceId": "b", "building": ack, "floor": floor}]])
    steps.json = lambda *args: next(answers)  # type: ignore[method-assign]
    assert _all_acknowledged(steps, "tags.site = 'lab'", 2) is False
    assert _all_acknowledged(steps, "tags.site = 'lab'", 2) is True


def test_setup_failure_is_exit_3_and_stops_what_was_started(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_module, "emulator_command",
                        lambda address, data_dir, discovery: [PY, "-c", "print('cannot start: disk full'); exit(1)"])
    lines: list[str] = []
    code = demo_module.run_demo(tmp_path, 2, "127.0.0.9", echo=lambda text="", **kw: lines.append(text))
    assert code == demo_module.EXIT_SETUP_FAILED
    text = "\n".join(lines)
    assert "Setup failed: emulator exited with code 1 before its discovery file" in text
    assert "cannot start: disk full" in text
    assert "everything stopped" in text


@pytest.mark.parametrize("options", [["--connection-string", "HostName=h.azure-devices.net;SharedAccessKeyName=p;"
                                                            "SharedAccessKey=a2V5"], ["--json"], ["--ca-file", "/ca.pem"]])
def test_demo_takes_no_hub_settings(options, monkeypatch):
    """It runs its own throwaway emulator and never touches another hub: hub options are refused."""
    from click.testing import CliRunner
    monkeypatch.setattr(demo_module, "run_demo", lambda *a, **k: pytest.fail("the demo must not start"))
    result = CliRunner().invoke(demo_module.demo, options)
    assert result.exit_code == 2
    assert f"No such option '{options[0]}'" in result.stderr and "a2V5" not in result.output


def test_the_service_cli_has_no_demo_and_never_imports_the_emulator():
    """The operator's CLI talks to Azure IoT Hub: importing it must not pull in the emulator."""
    import subprocess
    code = ("import sys, service.cli; from click.testing import CliRunner; "
            "assert 'demo' not in service.cli.cli.commands; "
            "print(sorted(m for m in sys.modules if m == 'emulator' or m.startswith('emulator.')))")
    done = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_scale_story_tallies_per_device_results_and_fails_on_a_short_job(tmp_path):
    from demo.stories import _device_results, _method_status, _tally

    steps = steps_for(tmp_path)
    answered = {"status": "completed", "outcome": {"deviceMethodResponse": {"status": 200}}}
    busy = {"status": "completed", "outcome": {"deviceMethodResponse": {"status": 409}}}
    jobs = iter([{"status": "completed", "devices": [answered, answered, busy]},
                 {"status": "completed", "devices": [answered, answered]}])
    steps.json = lambda *args, **kwargs: next(jobs)  # type: ignore[method-assign]
    tally = _device_results(steps, "j1", 3, _method_status)
    assert tally == {200: 2, 409: 1} and _tally(tally) == "2 200, 1 409"
    with pytest.raises(StepFailed, match="2 device results \\(expected 3\\)"):
        _device_results(steps, "j2", 3, _method_status)


def test_a_big_fleet_gets_more_time_to_start():
    assert demo_module.scale_start_timeout(10000) > demo_module.scale_start_timeout(1000) > demo_module.START_TIMEOUT
