"""`iothub-device` through click's CliRunner: help, one-line errors with their exit codes, clean stop."""

import logging
import os
import signal

import click
import pytest
from azure.iot.device import exceptions as sdk_errors
from click.testing import CliRunner

from device.cli import SETTING_OPTIONS, cli, fleet_settings
from device.errors import (EXIT_AUTH, EXIT_OK, EXIT_PROVISIONING, EXIT_SETTINGS, EXIT_UNREACHABLE,
                           EXIT_USAGE, SettingsProblem)
from hubsettings import resolve_device_settings

from .fakes import FakeDeviceClient, FakeFactory, FakeTime

KEY = "8cc0Q0uyQZXpjwRZmcbS7ylk+eo0FLauFovl2gd1Vbc="
GROUP_KEY = "GE5K8DIILj1gEg6WNcmgqJyQsWkphPUMZ9ZOESClIbs="
AZURE_CS = f"HostName=myhub.azure-devices.net;DeviceId=dev1;SharedAccessKey={KEY}"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No settings from this machine: empty environment for our names, no .env, no emulator."""
    for name in list(os.environ):
        if name.startswith(("IOTHUB_", "PROVISIONING_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("IOTHUB_EMULATOR_HOME", str(tmp_path / "emulator-home"))
    monkeypatch.chdir(tmp_path)
    # The CLI quiets the SDK's loggers; give other tests theirs back.
    loggers = [logging.getLogger(name) for name in ("azure", "paho")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    yield tmp_path
    for lg, (level, propagate) in zip(loggers, saved):
        lg.setLevel(level)
        lg.propagate = propagate


def invoke(args, **deps):
    time = FakeTime()
    obj = {"sleep": time.sleep, "clock": time.clock, **deps}
    return CliRunner().invoke(cli, args, obj=obj)


def stop_when_started(agents):
    os.kill(os.getpid(), signal.SIGTERM)


def test_help_documents_every_option_and_the_exit_codes():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for param in cli.params:
        assert isinstance(param, click.Option)
        assert param.help and len(param.help) > 15, f"{param.name} has no help"
        for opt in param.opts + param.secondary_opts:
            assert opt in text, opt
    for code in ("0 stopped by SIGTERM (or Ctrl-C, one device)", "2 usage error", "3 bad settings", "4 credentials refused",
                 "5 hub or DPS unreachable", "6 DPS did not assign", "130 a fleet stopped by Ctrl-C"):
        assert code in text


def test_every_setting_option_maps_to_a_hubsettings_name():
    option_names = {p.name for p in cli.params}
    assert set(SETTING_OPTIONS) <= option_names


def test_bad_connection_string_is_one_line_exit_3_without_the_key():
    result = invoke(["--connection-string", f"HostName=h;DeviceId=d;SharedAccessKey={KEY};Bogus=1"])
    assert result.exit_code == EXIT_SETTINGS
    assert result.stderr.splitlines() == [
        "Error: IOTHUB_DEVICE_CONNECTION_STRING (command line): unknown part 'Bogus'"]
    assert KEY not in result.output and "Traceback" not in result.output


def test_bad_connection_string_from_the_environment(monkeypatch):
    monkeypatch.setenv("IOTHUB_DEVICE_CONNECTION_STRING", "HostName=h;DeviceId=d")
    result = invoke([])
    assert result.exit_code == EXIT_SETTINGS
    assert result.stderr.strip() == "Error: IOTHUB_DEVICE_CONNECTION_STRING (environment): SharedAccessKey is missing"


def test_unreadable_ca_file_is_a_settings_error(isolated):
    ca = isolated / "ca.pem"
    ca.write_text("not a certificate")
    result = invoke(["--connection-string", AZURE_CS.replace("myhub.azure-devices.net", "otherhost"),
                     "--ca-file", str(ca)], factory=FakeFactory())
    assert result.exit_code == EXIT_SETTINGS
    assert "holds no PEM certificate" in result.stderr


def test_refused_credentials_exit_4():
    client = FakeDeviceClient(connect_errors=[sdk_errors.CredentialError("CONNACK 5")])
    result = invoke(["--connection-string", AZURE_CS], factory=FakeFactory(client))
    assert result.exit_code == EXIT_AUTH
    assert result.stderr.startswith("Error: IoT hub myhub.azure-devices.net refused the device's credentials")
    assert client.connect_calls == 1 and client.shutdown_calls == 1
    assert "Traceback" not in result.output


def refused_later(*clients):
    """A `started` hook: the hub drops each client, then refuses its reconnect (deleted device).
    Should the listener not stop by itself, a SIGTERM after 10 s makes the test fail, not hang."""
    import asyncio
    from azure.iot.device.common import transport_exceptions

    def hook(agents):
        asyncio.get_running_loop().call_later(10, os.kill, os.getpid(), signal.SIGTERM)
        for client in clients:
            client.set_connected(False)
            client.on_background_exception(transport_exceptions.UnauthorizedError("Connection Refused: not authorised."))
    return hook


def test_credentials_refused_after_connecting_exit_4():
    """Deleted, disabled or re-keyed while running: the SDK gives up, and so does the listener."""
    client = FakeDeviceClient()
    result = invoke(["--connection-string", AZURE_CS, "--no-telemetry"], factory=FakeFactory(client),
                    started=refused_later(client))
    assert result.exit_code == EXIT_AUTH, result.output
    assert result.stderr.splitlines() == [
        "Error: IoT hub myhub.azure-devices.net refused the device's credentials on a reconnect (Connection "
        "Refused: not authorised.): was the device deleted, disabled or given new keys? Fix that, then start "
        "the listener again"]
    assert "dev1 the hub refused this device's credentials" in result.stdout
    assert client.shutdown_calls == 1 and KEY not in result.output


def test_a_fleet_exits_4_once_every_device_was_refused():
    factory = FakeFactory(by_id={f"sim-00{i}": FakeDeviceClient() for i in (1, 2)})
    result = invoke(["--count", "2", "--no-telemetry"], factory=factory,
                    started=refused_later(*factory.by_id.values()))
    assert result.exit_code == EXIT_AUTH, result.output
    assert result.stderr.startswith("Error: all 2 devices stopped: IoT hub hub.example.test refused their credentials")
    assert len(result.stderr.splitlines()) == 1


def test_help_says_what_a_later_refusal_does():
    text = " ".join(CliRunner().invoke(cli, ["--help"]).output.split())
    assert "that device stops. A single device's listener then exits 4" in text
    assert "the listener exits 4 once no device is left running" in text


def test_unreachable_emulator_exits_5_and_says_how_to_start_it():
    client = FakeDeviceClient(connect_errors=[sdk_errors.ConnectionFailedError("refused")] * 5000)
    result = invoke(["--connect-timeout", "10"], factory=FakeFactory(client))
    assert result.exit_code == EXIT_UNREACHABLE
    assert "Using IoT hub localhost as device myDeviceId (local emulator" in result.stdout
    assert result.stdout.splitlines()[1].startswith(
        "No local emulator is running (no discovery file): start one with `iothub-emulator`")
    assert "connect attempt 1 failed: refused; retrying in 1 s" in result.stdout
    error_lines = result.stderr.splitlines()
    assert len(error_lines) == 1
    assert error_lines[0].startswith("Error: could not reach IoT hub localhost within 10 s")
    assert "start it with `iothub-emulator` in another terminal" in error_lines[0]
    assert client.connect_calls == 5  # at 0, 1, 3, 7 and the deadline (10 s)


def test_no_emulator_line_when_the_hub_is_configured(monkeypatch):
    client = FakeDeviceClient(connect_errors=[sdk_errors.ConnectionFailedError("refused")] * 5000)
    result = invoke(["--connection-string", AZURE_CS, "--connect-timeout", "3"], factory=FakeFactory(client))
    assert result.exit_code == EXIT_UNREACHABLE
    assert "No local emulator" not in result.output and "iothub-emulator" not in result.output


def test_an_azure_connection_string_ignores_a_running_emulator(isolated, monkeypatch):
    from hubsettings.discovery import EmulatorInfo, write_discovery
    discovery = isolated / "discovery.json"
    write_discovery(EmulatorInfo(host_name="localhost", mqtt_address="127.0.0.1", mqtt_port=8883,
                                 rest_address="127.0.0.1", rest_port=9443, ca_file=str(isolated / "ca.pem"),
                                 service_connection_string="x"), discovery)
    monkeypatch.setenv("IOTHUB_EMULATOR_DISCOVERY", str(discovery))
    client = FakeDeviceClient()
    factory = FakeFactory(client)
    result = invoke(["--connection-string", AZURE_CS, "--no-telemetry"], factory=factory,
                    started=stop_when_started)
    assert result.exit_code == EXIT_OK, result.output
    assert result.stdout.splitlines()[0] == (
        "Using IoT hub myhub.azure-devices.net as device dev1 (from command line)")
    assert factory.ca_pems == [None]


def test_provisioning_not_assigned_exits_6():
    factory = FakeFactory()
    factory.provisioning_status = "failed"
    result = invoke(["--device-id", "kiosk-1"], factory=factory)
    assert result.exit_code == EXIT_PROVISIONING
    assert factory.registrations == ["kiosk-1"]
    assert result.stderr.startswith("Error: DPS localhost did not assign registration kiosk-1")


def test_sigterm_is_a_clean_stop_exit_0():
    client = FakeDeviceClient()
    result = invoke(["--connection-string", AZURE_CS, "--no-telemetry"], factory=FakeFactory(client),
                    started=stop_when_started)
    assert result.exit_code == EXIT_OK, result.output
    assert client.shutdown_calls == 1
    assert result.stdout.splitlines()[-1] == "Stopped"
    assert KEY not in result.output


def test_options_reach_the_device():
    client = FakeDeviceClient()
    factory = FakeFactory(client)
    result = invoke(["--connection-string", AZURE_CS, "--reboot-delay", "1.5", "--no-telemetry",
                     "--json-logs"], factory=factory, started=stop_when_started)
    assert result.exit_code == EXIT_OK, result.output
    assert factory.identities[0].connection_string == AZURE_CS
    assert '"device": "dev1"' in result.stdout and '"message": "connected"' in result.stdout


def test_count_runs_a_fleet_on_the_emulator():
    factory = FakeFactory()
    result = invoke(["--count", "3", "--device-id-prefix", "bench-", "--no-telemetry"], factory=factory,
                    started=stop_when_started)
    assert result.exit_code == EXIT_OK, result.output
    assert factory.registrations == ["bench-001", "bench-002", "bench-003"]
    assert "(and 2 more devices: bench-002..bench-003)" in result.stdout


def test_count_with_a_single_device_connection_string_is_a_settings_error():
    result = invoke(["--count", "2", "--connection-string", AZURE_CS])
    assert result.exit_code == EXIT_SETTINGS
    assert "--count needs settings that can name many devices" in result.stderr


@pytest.mark.parametrize("args", [["--count", "0"], ["--count", "2", "--device-id", "x"],
                                  ["--reboot-delay", "0"], ["--telemetry-interval", "-1"], ["--bogus"]])
def test_usage_errors_exit_2(args):
    assert invoke(args).exit_code == EXIT_USAGE


def test_fleet_settings_with_a_dps_group_enrollment(isolated):
    env = {"PROVISIONING_IDSCOPE": "0ne0001", "PROVISIONING_GROUP_KEY": GROUP_KEY,
           "PROVISIONING_REGISTRATION_ID": "only-one", "IOTHUB_EMULATOR_HOME": str(isolated)}

    def resolve(flags):
        return resolve_device_settings(flags, env=env, dotenv_path=isolated / "none.env")

    devices = fleet_settings({}, 12, "sim-", resolve)
    assert [d.device_id for d in devices][:2] == ["sim-001", "sim-002"] and devices[-1].device_id == "sim-012"
    keys = {d.provisioning.symmetric_key for d in devices}
    assert len(keys) == 12  # one derived key per device


def test_fleet_settings_refuse_an_individual_dps_key(isolated):
    env = {"PROVISIONING_IDSCOPE": "0ne0001", "PROVISIONING_SYMMETRIC_KEY": KEY,
           "PROVISIONING_HOST": "global.azure-devices-provisioning.net"}

    def resolve(flags):
        return resolve_device_settings(flags, env=env, dotenv_path=isolated / "none.env")

    with pytest.raises(SettingsProblem, match="group enrollment"):
        fleet_settings({}, 2, "sim-", resolve)


def test_env_file_is_read(isolated):
    env_file = isolated / "device.env"
    env_file.write_text(f"IOTHUB_DEVICE_CONNECTION_STRING={AZURE_CS}\n")
    factory = FakeFactory()
    result = invoke(["--env-file", str(env_file), "--no-telemetry"], factory=factory, started=stop_when_started)
    assert result.exit_code == EXIT_OK, result.output
    assert factory.identities[0].device_id == "dev1"
    assert f"from .env ({env_file})" in result.stdout


def test_a_missing_env_file_is_a_usage_error(isolated):
    assert invoke(["--env-file", str(isolated / "nope.env")]).exit_code == EXIT_USAGE
