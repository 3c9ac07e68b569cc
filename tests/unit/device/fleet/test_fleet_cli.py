"""`iothub-device --count N` / `--connection-strings-file` through click's CliRunner with fake SDK-shaped
clients: a fleet starts even when some devices fail (names them, retries them), exits with the failure's
code only when none starts, exits 130 on Ctrl-C and 0 on SIGTERM, and refuses bad input in one line."""

import asyncio
import os
import signal

from azure.iot.device import exceptions as sdk_errors
from click.testing import CliRunner

from device.cli import cli
from device.errors import EXIT_AUTH, EXIT_INTERRUPTED, EXIT_OK, EXIT_SETTINGS, EXIT_USAGE

from ..fakes import FakeDeviceClient, FakeFactory, FakeTime
from ..test_cli import isolated  # noqa: F401 - the same isolation from this machine's settings

KEY = "8cc0Q0uyQZXpjwRZmcbS7ylk+eo0FLauFovl2gd1Vbc="


def invoke(args, **deps):
    time = FakeTime()
    obj = {"sleep": time.sleep, "clock": time.clock, **deps}
    return CliRunner().invoke(cli, args, obj=obj)


def signal_when_started(sig):
    def hook(agents):
        os.kill(os.getpid(), sig)
    return hook


class RefusedThenSilent(FakeDeviceClient):
    """The hub refuses the first connect; later tries never get an answer (retries do not wait under
    the fake clock, so a client that refused a fixed number of times would race the test)."""

    async def connect(self) -> None:
        self.connect_calls += 1
        if self.connect_calls == 1:
            raise sdk_errors.CredentialError("CONNACK 5")
        await asyncio.Event().wait()


def refusing() -> FakeDeviceClient:
    return RefusedThenSilent()


def test_a_fleet_starts_without_the_devices_that_failed_names_them_and_retries_them():
    refused = refusing()
    factory = FakeFactory(by_id={"sim-002": refused})
    seen = {}

    def hook(agents):
        seen["connected"] = [a.device_id for a in agents if a.connected]
        os.kill(os.getpid(), signal.SIGTERM)

    result = invoke(["--count", "3", "--no-telemetry"], factory=factory, started=hook)
    assert result.exit_code == EXIT_OK, result.output
    assert "2 devices running (1 failed to start, retrying them); press Ctrl-C to stop" in result.stdout, result.stdout
    assert "  1 failed: sim-002: IoT hub hub.example.test refused the device's credentials" in result.stdout
    assert seen["connected"] == ["sim-001", "sim-003"]
    assert "Summary: 3 devices;" in result.stdout and "Traceback" not in result.output


def test_a_failed_device_is_retried_until_it_starts():
    flaky = FakeDeviceClient(connect_errors=[sdk_errors.CredentialError("CONNACK 5")])
    factory = FakeFactory(by_id={"sim-001": flaky})

    def hook(agents):
        async def wait_then_stop():
            while not agents[0].connected:
                await asyncio.sleep(0.01)
            os.kill(os.getpid(), signal.SIGTERM)
        asyncio.get_running_loop().create_task(wait_then_stop())

    result = invoke(["--count", "2", "--no-telemetry"], factory=factory, started=hook)
    assert result.exit_code == EXIT_OK, result.output
    assert flaky.connect_calls == 2


def test_a_fleet_none_of_whose_devices_starts_exits_with_that_failure():
    factory = FakeFactory(by_id={f"sim-00{i}": refusing() for i in (1, 2, 3)})
    result = invoke(["--count", "3", "--no-telemetry"], factory=factory)
    assert result.exit_code == EXIT_AUTH, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: none of the 3 devices started (3 failed; sim-001: IoT hub")


def test_ctrl_c_stops_a_fleet_with_exit_130_and_a_summary():
    result = invoke(["--count", "2", "--no-telemetry"], factory=FakeFactory(), started=signal_when_started(signal.SIGINT))
    assert result.exit_code == EXIT_INTERRUPTED, result.output
    assert result.stdout.rstrip().endswith("Stopped") and "Summary: 2 devices;" in result.stdout
    assert result.stderr == ""


def test_sigterm_stops_a_fleet_with_exit_0():
    result = invoke(["--count", "2", "--no-telemetry"], factory=FakeFactory(), started=signal_when_started(signal.SIGTERM))
    assert result.exit_code == EXIT_OK, result.output


def test_a_big_fleet_prints_no_line_per_device_unless_asked():
    result = invoke(["--count", "101", "--no-telemetry"], factory=FakeFactory(),
                    started=signal_when_started(signal.SIGTERM))
    assert result.exit_code == EXIT_OK, result.output
    assert "sim-050 connected" not in result.stdout and "101 devices running" in result.stdout
    result = invoke(["--count", "101", "--no-telemetry", "--device-events"], factory=FakeFactory(),
                    started=signal_when_started(signal.SIGTERM))
    assert "sim-050 connected" in result.stdout


def test_a_connection_strings_file_runs_one_device_per_line(tmp_path):
    path = tmp_path / "devices.txt"
    path.write_text("".join(f"HostName=myhub.azure-devices.net;DeviceId=d{i};SharedAccessKey={KEY}\n" for i in range(3)))
    factory = FakeFactory()
    result = invoke(["--connection-strings-file", str(path), "--no-telemetry"], factory=factory,
                    started=signal_when_started(signal.SIGTERM))
    assert result.exit_code == EXIT_OK, result.output
    assert sorted(i.device_id for i in factory.identities) == ["d0", "d1", "d2"]
    assert "at most 100 connections/s" in result.stdout  # Azure's pace unless told otherwise
    assert KEY not in result.output


def test_a_bad_line_in_the_connection_strings_file_is_one_line_exit_3(tmp_path):
    path = tmp_path / "devices.txt"
    path.write_text(f"HostName=myhub.azure-devices.net;DeviceId=d1;SharedAccessKey={KEY}\nHostName=myhub;DeviceId\n")
    result = invoke(["--connection-strings-file", str(path)])
    assert result.exit_code == EXIT_SETTINGS
    assert result.stderr.startswith(f"Error: connection strings file {path} line 2:")
    assert len(result.stderr.splitlines()) == 1


def test_usage_errors_of_a_fleet_exit_2(tmp_path):
    assert invoke(["--count", "0"]).exit_code == EXIT_USAGE
    assert invoke(["--count", "10001"]).exit_code == EXIT_USAGE
    path = tmp_path / "devices.txt"
    path.write_text("")
    result = invoke(["--connection-strings-file", str(path), "--count", "3"])
    assert result.exit_code == EXIT_USAGE and "leave out --count" in result.output


def test_a_connection_strings_file_takes_the_ca_file_option(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    path = tmp_path / "devices.txt"
    path.write_text(f"HostName=127.0.0.9;DeviceId=d0;SharedAccessKey={KEY}\n")
    factory = FakeFactory()
    result = invoke(["--connection-strings-file", str(path), "--ca-file", str(ca), "--no-telemetry"], factory=factory,
                    started=signal_when_started(signal.SIGTERM))
    assert result.exit_code == EXIT_OK, result.output
    assert factory.ca_pems == [ca.read_text()]

