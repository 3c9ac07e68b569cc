"""The real fleet program (`python -m device --count N`) against a real emulator process: a few hundred
devices answer a method job and a twin-update job, all come back after an emulator restart, Ctrl-C in
the middle of connecting is quiet (exit 130), and bad input is one line with its exit code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import PROJECT_ROOT
from tests.e2e.support import wait_for

pytestmark = pytest.mark.e2e

DEVICES = 300
READY_WITHIN = 120.0  # generous for a loaded 2-core machine; the bench measures the real figure
EXIT_WITHIN = 60.0


def program_env(emulator, work_dir: Path, **more: str) -> dict[str, str]:
    """This machine's environment minus hub settings, pointed at the test's emulator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IOTHUB_", "PROVISIONING_"))}
    env.update(PYTHONUNBUFFERED="1", IOTHUB_EMULATOR_DISCOVERY=str(emulator.discovery_file),
               IOTHUB_EMULATOR_HOME=str(work_dir / "home"), **more)
    return env


class FleetProcess:
    def __init__(self, emulator, work_dir: Path, *args: str, env: dict[str, str] | None = None):
        self.out, self.err = work_dir / "fleet.out", work_dir / "fleet.err"
        full_env = program_env(emulator, work_dir, **(env or {}))
        self.env = full_env
        with open(self.out, "wb") as stdout, open(self.err, "wb") as stderr:
            self.process = subprocess.Popen([sys.executable, "-m", "device", *args], cwd=PROJECT_ROOT, env=full_env,
                                            stdout=stdout, stderr=stderr)

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_line(self, text: str, timeout: float) -> None:
        def seen():
            assert self.process.poll() is None, f"the fleet exited early:\n{self.stdout()[-3000:]}\n{self.stderr()}"
            return text in self.stdout()
        wait_for(seen, timeout=timeout, interval=0.2, what=f"'{text}' from the fleet")

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(EXIT_WITHIN)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


def service(fleet: FleetProcess | dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = fleet if isinstance(fleet, dict) else fleet.env
    return subprocess.run([sys.executable, "-m", "service", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def job(fleet: FleetProcess, kind: str, *args: str) -> dict:
    result = service(fleet, "--json", "job", kind, "--query-condition", "STARTSWITH(deviceId, 'fl-')",
                     "--wait", "--poll-interval", "0.5", "--timeout", "120", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def connected_devices(fleet: FleetProcess) -> int:
    result = service(fleet, "--json", "query",
                     "SELECT deviceId FROM devices WHERE STARTSWITH(deviceId, 'fl-') AND connectionState = 'Connected'")
    assert result.returncode == 0, result.stdout + result.stderr
    return len(json.loads(result.stdout))


def test_a_fleet_serves_jobs_and_comes_back_whole_after_an_emulator_restart(emulator_process, tmp_path):
    emulator_process.start()
    fleet = FleetProcess(emulator_process, tmp_path, "--count", str(DEVICES), "--device-id-prefix", "fl-",
                         "--no-telemetry", "--reboot-delay", "1")
    try:
        fleet.wait_line(f"{DEVICES} devices running; press Ctrl-C to stop", READY_WITHIN)
        method = job(fleet, "schedule-method", "--method", "lockDoor", "--payload", '{"lockTime": "10m"}')
        assert method["deviceJobStatistics"]["succeededCount"] == DEVICES, method
        twin = job(fleet, "schedule-twin-update", "--desired", '{"building": 43, "floor": 3}')
        assert twin["deviceJobStatistics"]["succeededCount"] == DEVICES, twin

        emulator_process.stop()
        emulator_process.start()
        wait_for(lambda: connected_devices(fleet) == DEVICES, timeout=READY_WITHIN, interval=1.0,
                 what=f"all {DEVICES} devices back after the restart")
        again = job(fleet, "schedule-method", "--method", "turnon")
        assert again["deviceJobStatistics"]["succeededCount"] == DEVICES, again
        acknowledged = service(fleet, "--json", "query", "SELECT deviceId FROM devices WHERE STARTSWITH(deviceId, 'fl-') "
                                                         "AND properties.reported.floor.ac = 200")
        assert len(json.loads(acknowledged.stdout)) == DEVICES
        code = fleet.stop(signal.SIGINT)
    finally:
        fleet.stop(signal.SIGKILL)
    out = fleet.stdout()
    assert code == 130, out[-2000:] + fleet.stderr()
    summary = next(line for line in out.splitlines() if line.startswith("Summary:"))
    assert f"methods answered {2 * DEVICES}" in summary and f"desired patches acknowledged {DEVICES}" in summary
    reconnects = int(summary.rsplit("reconnects ", 1)[1].replace(",", ""))
    assert reconnects >= DEVICES, summary
    assert "Traceback" not in out + fleet.stderr() and fleet.stderr() == ""


def test_ctrl_c_while_connecting_is_quiet_and_exits_130(emulator_process, tmp_path):
    emulator_process.start()
    fleet = FleetProcess(emulator_process, tmp_path, "--count", str(DEVICES), "--device-id-prefix", "fc-",
                         "--no-telemetry", "--concurrency", "10", "--device-events")
    try:
        fleet.wait_line("Starting 300 devices", 60)
        wait_for(lambda: "provisioned" in fleet.stdout(), timeout=60, what="the first device provisioned")
        code = fleet.stop(signal.SIGINT)
    finally:
        fleet.stop(signal.SIGKILL)
    out = fleet.stdout()
    assert code == 130, out[-2000:]
    assert "press Ctrl-C to stop" not in out  # it was interrupted before the fleet was up
    assert out.rstrip().endswith("Stopped") and "Traceback" not in out
    assert fleet.stderr() == ""


def test_a_registration_refused_by_the_hub_is_one_line_exit_4(emulator_process, tmp_path):
    emulator_process.start()
    wrong_group_key = "d3JvbmctZ3JvdXAta2V5LXdyb25nLWdyb3VwLWtleSE="
    fleet = FleetProcess(emulator_process, tmp_path, "--count", "3", "--no-telemetry", "--connect-timeout", "5",
                         env={"PROVISIONING_HOST": emulator_process.host_name, "PROVISIONING_IDSCOPE": "0ne00000DEV",
                              "PROVISIONING_GROUP_KEY": wrong_group_key,
                              "IOTHUB_CA_FILE": str(emulator_process.data_dir / "certs" / "ca.pem")})
    code = fleet.process.wait(EXIT_WITHIN)
    assert code == 4, fleet.stdout() + fleet.stderr()
    lines = fleet.stderr().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: none of the 3 devices started (3 failed; sim-001: DPS")
    assert wrong_group_key not in fleet.stdout() + fleet.stderr()


def test_bad_fleet_input_is_one_line_with_its_exit_code(emulator_process, tmp_path):
    bad_file = tmp_path / "devices.txt"
    key = "8cc0Q0uyQZXpjwRZmcbS7ylk+eo0FLauFovl2gd1Vbc="
    bad_file.write_text(f"HostName=h.example;DeviceId=a;SharedAccessKey={key}\nHostName=h.example;DeviceId=b;"
                        f"SharedAccesKey={key}\n")
    cases = [(["--count", "0"], 2, "Invalid value for '--count'"),
             (["--connection-strings-file", str(bad_file)], 3, f"connection strings file {bad_file} line 2:")]
    for args, expected, text in cases:
        started = time.monotonic()
        fleet = FleetProcess(emulator_process, tmp_path, *args)
        code = fleet.process.wait(EXIT_WITHIN)
        assert code == expected and text in fleet.stderr(), (args, code, fleet.stderr())
        assert key not in fleet.stderr() + fleet.stdout() and "Traceback" not in fleet.stderr()
        assert time.monotonic() - started < EXIT_WITHIN


def test_a_connection_strings_file_runs_its_devices_and_names_the_one_that_cannot_start(emulator_process, tmp_path):
    emulator_process.start()
    env = program_env(emulator_process, tmp_path)
    lines = ["# devices made with iothub-service device create", ""]
    for index in range(6):
        device = f"cs-{index}"
        status = "disabled" if index == 3 else "enabled"
        assert service(env, "device", "create", device, "--status", status).returncode == 0
        shown = service(env, "--json", "device", "connection-string", device, "--show-key")
        lines.append(json.loads(shown.stdout)["connectionString"])
    devices_file = tmp_path / "devices.txt"
    devices_file.write_text("\n".join(lines) + "\n")
    fleet = FleetProcess(emulator_process, tmp_path, "--connection-strings-file", str(devices_file), "--no-telemetry",
                         "--connect-timeout", "5")
    try:
        fleet.wait_line("5 devices running (1 failed to start, retrying them); press Ctrl-C to stop", READY_WITHIN)
        assert "1 failed: cs-3: IoT hub" in fleet.stdout()
        result = service(fleet, "--json", "job", "schedule-method", "--method", "lockDoor", "--payload",
                         '{"lockTime": "10m"}', "--query-condition", "STARTSWITH(deviceId, 'cs-')", "--wait",
                         "--poll-interval", "0.5", "--timeout", "120")
        job_result = json.loads(result.stdout)["deviceJobStatistics"]
        assert job_result["succeededCount"] == 5 and job_result["failedCount"] == 1, job_result
        code = fleet.stop(signal.SIGTERM)
    finally:
        fleet.stop(signal.SIGKILL)
    assert code == 0, fleet.stdout()[-2000:] + fleet.stderr()
    assert "SharedAccessKey=" not in fleet.stdout() + fleet.stderr()


def test_a_registration_dps_refuses_is_one_line_exit_6(emulator_process, tmp_path):
    emulator_process.start()
    env = program_env(emulator_process, tmp_path)
    for device in ("rr-001", "rr-002"):  # registered by hand: DPS will not re-key them
        assert service(env, "device", "create", device).returncode == 0
    fleet = FleetProcess(emulator_process, tmp_path, "--count", "2", "--device-id-prefix", "rr-", "--no-telemetry",
                         "--connect-timeout", "5")
    code = fleet.process.wait(EXIT_WITHIN)
    assert code == 6, fleet.stdout() + fleet.stderr()
    lines = fleet.stderr().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "Error: none of the 2 devices started (2 failed; rr-001: DPS") and "409" in lines[0], lines
