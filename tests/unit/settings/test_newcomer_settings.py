"""Settings as the README and .env.example document them: expansion, .env for the emulator, several
emulators side by side, the CA file check, and the labels of what is printed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from azure.iot.device import exceptions as sdk_errors
from device.provisioning import refusal_message, refused_status
from emulator.cli import main as emulator_main
from hubsettings import (EmulatorInfo, ProvisioningSettings, SettingsError, emulator_environment,
                         resolve_device_settings, resolve_service_settings, write_discovery)
from hubsettings.discovery import default_data_dir, default_discovery_file

KEY = "GE5K8DIILj1gEg6WNcmgqJyQsWkphPUMZ9ZOESClIbs="


def info(address: str, pid: int | None = None) -> EmulatorInfo:
    return EmulatorInfo(host_name=address, mqtt_address=address, mqtt_port=8883, rest_address=address,
                        rest_port=443, ca_file="/nonexistent/ca.pem",
                        service_connection_string=f"HostName={address};SharedAccessKeyName=iothubowner;"
                                                  f"SharedAccessKey={KEY}",
                        provisioning_host=address, provisioning_id_scope="0ne00000DEV",
                        provisioning_group_key=KEY, pid=pid or os.getpid())


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def test_tilde_and_variables_in_dotenv_are_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    dotenv = tmp_path / ".env"
    dotenv.write_text("IOTHUB_EMULATOR_HOME=~/.iothub-emulator\n"
                      "IOTHUB_EMULATOR_DISCOVERY=$HOME/.iothub-emulator/discovery.json\n")
    write_discovery(info("127.0.0.1"), tmp_path / ".iothub-emulator" / "discovery.json")
    settings = resolve_service_settings({}, env={"HOME": str(tmp_path)}, dotenv_path=dotenv)
    assert settings.emulator_running and settings.connection_string.host_name == "127.0.0.1"
    assert f"discovery file {tmp_path}/.iothub-emulator/discovery.json" in settings.source


def test_tilde_in_ca_file_and_environment_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    env = {"HOME": str(tmp_path), "IOTHUB_EMULATOR_HOME": "~/h", "IOTHUB_CA_FILE": "~/ca.pem"}
    settings = resolve_service_settings({}, env=env, dotenv_path=tmp_path / "none")
    assert settings.ca_file == tmp_path / "ca.pem"


def test_the_emulator_reads_its_settings_from_dotenv(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"IOTHUB_EMULATOR_HOME={tmp_path}/from-dotenv\n")
    assert emulator_environment({}, dotenv)["IOTHUB_EMULATOR_HOME"] == f"{tmp_path}/from-dotenv"
    env = emulator_environment({"IOTHUB_EMULATOR_HOME": "/from/env"}, dotenv)
    assert env["IOTHUB_EMULATOR_HOME"] == "/from/env"  # the environment wins over .env
    # The real program, started where that .env is: its banner shows the data dir .env chose.
    result = subprocess.run([sys.executable, "-c", "from hubsettings import emulator_environment as e; "
                             "from hubsettings.discovery import default_data_dir as d; print(d('127.0.0.1', e()))"],
                            cwd=tmp_path, capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("IOTHUB_")})
    assert result.stdout.strip() == f"{tmp_path}/from-dotenv", result.stderr


def test_each_address_gets_its_own_data_dir_and_discovery_file(home):
    env = {"IOTHUB_EMULATOR_HOME": str(home)}
    assert default_data_dir("127.0.0.1", env) == home
    assert default_discovery_file("127.0.0.1", env) == home / "discovery.json"
    assert default_data_dir("127.0.0.91", env) == home / "hubs" / "127.0.0.91"
    assert default_discovery_file("127.0.0.91", env) == home / "hubs" / "127.0.0.91" / "discovery.json"
    env["IOTHUB_EMULATOR_DISCOVERY"] = str(home / "mine.json")  # explicit: used whatever the address
    assert default_discovery_file("127.0.0.91", env) == home / "mine.json"


def test_clients_keep_the_default_emulator_and_name_the_others(home, tmp_path):
    env = {"IOTHUB_EMULATOR_HOME": str(home)}
    none = tmp_path / "none"
    write_discovery(info("127.0.0.91"), home / "hubs" / "127.0.0.91" / "discovery.json")
    only = resolve_service_settings({}, env=env, dotenv_path=none)
    assert only.connection_string.host_name == "127.0.0.91" and "the only emulator running" in only.describe()

    write_discovery(info("127.0.0.1"), home / "discovery.json")
    both = resolve_service_settings({}, env=env, dotenv_path=none)
    assert both.connection_string.host_name == "127.0.0.1"
    assert "also running: 127.0.0.91" in both.describe()
    device = resolve_device_settings({"IOTHUB_DEVICE_ID": "myDeviceId"}, env=env, dotenv_path=none)
    assert "also running: 127.0.0.91" in device.describe()

    chosen = resolve_service_settings(
        {}, env={**env, "IOTHUB_EMULATOR_DISCOVERY": str(home / "hubs" / "127.0.0.91" / "discovery.json")},
        dotenv_path=none)
    assert chosen.connection_string.host_name == "127.0.0.91" and "also running" not in chosen.describe()

    (home / "discovery.json").unlink()
    write_discovery(info("127.0.0.92"), home / "hubs" / "127.0.0.92" / "discovery.json")
    with pytest.raises(SettingsError, match="2 local emulators are running.*IOTHUB_EMULATOR_DISCOVERY="):
        resolve_service_settings({}, env=env, dotenv_path=none)


def test_a_ca_file_that_is_not_pem_is_a_settings_error(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(SettingsError, match="holds no PEM certificate"):
        resolve_service_settings({"IOTHUB_CA_FILE": str(bad)}, env={"IOTHUB_EMULATOR_HOME": str(tmp_path)},
                                 dotenv_path=tmp_path / "none")


def test_the_start_line_says_the_key_shown_is_the_derived_device_key():
    derived = ProvisioningSettings("localhost", "0ne00000DEV", "d9", "U0rCabcdefghijklmnopqrstuvwxyz0123456789ABC=",
                                   from_group_key=True)
    assert "(group enrollment, derived device key U0rC" in derived.describe()
    assert "group key U0rC" not in derived.describe()


def test_a_dps_refusal_is_final_and_a_409_says_what_to_do_instead():
    inner = Exception("register request returned a service error status code 409")
    error = sdk_errors.ClientError("Unexpected failure")
    error.__cause__ = inner
    assert refused_status(error) == 409
    busy = sdk_errors.ClientError("x")
    busy.__cause__ = Exception("register request returned a service error status code 429")
    assert refused_status(busy) is None and refused_status(sdk_errors.ClientError("connection lost")) is None
    settings = ProvisioningSettings("localhost", "0ne00000DEV", "d2", KEY, from_group_key=True)
    assert ("`iothub-service device connection-string d2 --show-key`, passed as --connection-string"
            in refusal_message(settings, 409))


def test_the_emulator_never_overwrites_another_running_emulators_discovery_file(tmp_path):
    taken = tmp_path / "discovery.json"
    write_discovery(info("127.0.0.1", pid=os.getppid()), taken)
    result = CliRunner().invoke(emulator_main, ["--address", "127.0.0.93", "--in-memory",
                                                "--discovery-file", str(taken)])
    assert result.exit_code == 1
    assert "is the discovery file of the emulator running on 127.0.0.1" in result.output
    assert str(os.getppid()) in taken.read_text()


def test_env_example_defaults_work_when_uncommented(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    example = (Path(__file__).resolve().parents[3] / ".env.example").read_text()
    uncommented = "\n".join(line[2:] if line.startswith("# IOTHUB_EMULATOR_") else line
                            for line in example.splitlines())
    dotenv = tmp_path / ".env"
    dotenv.write_text(uncommented)
    env = emulator_environment({"HOME": str(tmp_path)}, dotenv)
    assert env["IOTHUB_EMULATOR_HOME"] == "~/.iothub-emulator"  # expanded where used, as a path
    assert default_data_dir("127.0.0.1", env) == tmp_path / ".iothub-emulator"
    assert default_discovery_file("127.0.0.1", env) == (
        tmp_path / ".iothub-emulator" / "hubs" / "127.0.0.91" / "discovery.json")


def test_an_explicit_connection_string_finds_its_emulator_among_several(home, tmp_path):
    env = {"IOTHUB_EMULATOR_HOME": str(home)}
    for address in ("127.0.0.91", "127.0.0.92"):
        write_discovery(info(address), home / "hubs" / address / "discovery.json")
    cs = f"HostName=127.0.0.92;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
    settings = resolve_service_settings({"IOTHUB_CONNECTION_STRING": cs}, env=env, dotenv_path=tmp_path / "none")
    assert settings.is_emulator and settings.ca_file == Path("/nonexistent/ca.pem")
    device = resolve_device_settings(
        {"IOTHUB_DEVICE_CONNECTION_STRING": f"HostName=127.0.0.91;DeviceId=d;SharedAccessKey={KEY}"},
        env=env, dotenv_path=tmp_path / "none")
    assert device.is_emulator


def test_a_device_registered_with_other_keys_runs_with_its_registry_key(home, tmp_path, monkeypatch):
    import hubsettings.resolve as resolve_module
    from hubsettings import derive_device_key, with_registered_key

    env = {"IOTHUB_EMULATOR_HOME": str(home)}
    write_discovery(info("127.0.0.1"), home / "discovery.json")
    registry = {"d2": "W3P4" + "A" * 39 + "=", "sensor-01": derive_device_key(KEY, "sensor-01")}
    monkeypatch.setattr(resolve_module, "registered_device_key",
                        lambda emulator, device_id, ca: registry.get(device_id))

    def run_by_id(device_id):
        return with_registered_key(resolve_device_settings({"IOTHUB_DEVICE_ID": device_id}, env=env,
                                                           dotenv_path=tmp_path / "none"))
    created = run_by_id("d2")  # `iothub-service device create d2`: DPS would answer 409
    assert created.provisioning is None and created.connection_string.shared_access_key == registry["d2"]
    assert "key of registered device d2 read from the emulator's registry" in created.describe()
    assert run_by_id("sensor-01").provisioning is not None  # registered by DPS: DPS takes it again
    assert run_by_id("new-one").provisioning is not None  # not registered: DPS creates it
    explicit = resolve_device_settings(
        {"IOTHUB_DEVICE_CONNECTION_STRING": f"HostName=h;DeviceId=x;SharedAccessKey={KEY}"},
        env=env, dotenv_path=tmp_path / "none")
    assert with_registered_key(explicit) is explicit
