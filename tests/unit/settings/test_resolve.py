"""Precedence flag > environment > .env > emulator (discovery file, then well-known defaults)."""

from pathlib import Path

import pytest

from hubsettings import (EmulatorInfo, SettingsError, derive_device_key, resolve_device_settings,
                         resolve_service_settings, wellknown, write_discovery)

KEY_A = "8cc0Q0uyQZXpjwRZmcbS7ylk+eo0FLauFovl2gd1Vbc="
KEY_B = "GE5K8DIILj1gEg6WNcmgqJyQsWkphPUMZ9ZOESClIbs="


def dev(host, device="d1", key=KEY_A):
    return f"HostName={host};DeviceId={device};SharedAccessKey={key}"


def svc(host, key=KEY_A):
    return f"HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={key}"


@pytest.fixture
def isolated(tmp_path):
    """An environment that points discovery at an empty temp dir, and an empty .env."""
    env = {"IOTHUB_EMULATOR_HOME": str(tmp_path / "home")}
    dotenv = tmp_path / ".env"
    dotenv.write_text("")
    return env, dotenv


def test_flag_beats_env_beats_dotenv(isolated):
    env, dotenv = isolated
    dotenv.write_text(f"IOTHUB_DEVICE_CONNECTION_STRING={dev('c.azure-devices.net')}\n")
    env["IOTHUB_DEVICE_CONNECTION_STRING"] = dev("b.azure-devices.net")
    s = resolve_device_settings({"IOTHUB_DEVICE_CONNECTION_STRING": dev("a.azure-devices.net")},
                                env=env, dotenv_path=dotenv)
    assert s.connection_string.host_name == "a.azure-devices.net" and s.source == "command line"
    s = resolve_device_settings({"IOTHUB_DEVICE_CONNECTION_STRING": None}, env=env, dotenv_path=dotenv)
    assert s.connection_string.host_name == "b.azure-devices.net" and s.source == "environment"
    del env["IOTHUB_DEVICE_CONNECTION_STRING"]
    s = resolve_device_settings({}, env=env, dotenv_path=dotenv)
    assert s.connection_string.host_name == "c.azure-devices.net" and s.source.startswith(".env")
    assert not s.is_emulator and s.ca_file is None


def test_well_known_defaults_when_nothing_is_set(isolated):
    env, dotenv = isolated
    s = resolve_device_settings({}, env=env, dotenv_path=dotenv)
    assert s.is_emulator and not s.emulator_running
    assert s.connection_string.device_id == wellknown.DEVICE_ID
    assert s.ca_file == Path(env["IOTHUB_EMULATOR_HOME"]) / "certs" / "ca.pem"
    svc_settings = resolve_service_settings({}, env=env, dotenv_path=dotenv)
    assert svc_settings.connection_string.host_name == "localhost"  # IoT Hub's 443: no port
    assert svc_settings.connection_string.shared_access_key_name == "iothubowner"


def test_discovery_file_is_used_and_other_ids_provision_through_the_group(isolated, tmp_path):
    env, dotenv = isolated
    ca = tmp_path / "ca.pem"
    write_discovery(EmulatorInfo(
        host_name="127.0.0.9", mqtt_address="127.0.0.9", mqtt_port=8883, rest_address="127.0.0.9",
        rest_port=9555, ca_file=str(ca), service_connection_string=svc("127.0.0.9:9555"),
        device_connection_strings={"myDeviceId": dev("127.0.0.9", "myDeviceId")},
        provisioning_host="127.0.0.9", provisioning_id_scope="0ne00000DEV", provisioning_group_key=KEY_B),
        Path(env["IOTHUB_EMULATOR_HOME"]) / "discovery.json")
    s = resolve_device_settings({}, env=env, dotenv_path=dotenv)
    assert s.connection_string.host_name == "127.0.0.9" and s.ca_file == ca and s.emulator_running
    s = resolve_device_settings({"IOTHUB_DEVICE_ID": "sensor-7"}, env=env, dotenv_path=dotenv)
    assert s.connection_string is None
    assert s.provisioning.registration_id == "sensor-7"
    assert s.provisioning.symmetric_key == derive_device_key(KEY_B, "sensor-7")
    assert resolve_service_settings({}, env=env, dotenv_path=dotenv).connection_string.port == 9555
    # The emulator's CA is trusted for its own host name given explicitly, never for Azure.
    s = resolve_device_settings({"IOTHUB_DEVICE_CONNECTION_STRING": dev("127.0.0.9")}, env=env, dotenv_path=dotenv)
    assert s.ca_file == ca and s.is_emulator
    s = resolve_device_settings({"IOTHUB_DEVICE_CONNECTION_STRING": dev("x.azure-devices.net")}, env=env,
                                dotenv_path=dotenv)
    assert s.ca_file is None and not s.is_emulator


def test_dead_emulator_discovery_file_is_ignored(isolated, tmp_path):
    env, dotenv = isolated
    write_discovery(EmulatorInfo("127.0.0.9", "127.0.0.9", 8883, "127.0.0.9", 9555, "ca.pem",
                                 svc("127.0.0.9:9555"), pid=2 ** 22 + 12345),
                    Path(env["IOTHUB_EMULATOR_HOME"]) / "discovery.json")
    assert not resolve_service_settings({}, env=env, dotenv_path=dotenv).emulator_running


def test_dps_with_group_key_derives_device_key(isolated):
    env, dotenv = isolated
    env.update(PROVISIONING_IDSCOPE="0ne0001", PROVISIONING_REGISTRATION_ID="r1", PROVISIONING_GROUP_KEY=KEY_B)
    s = resolve_device_settings({}, env=env, dotenv_path=dotenv)
    assert s.provisioning.host == "global.azure-devices-provisioning.net"
    assert s.provisioning.symmetric_key == derive_device_key(KEY_B, "r1") and s.provisioning.from_group_key
    assert KEY_B not in s.describe() and s.provisioning.symmetric_key not in s.describe()


@pytest.mark.parametrize("values, fragment", [
    ({"PROVISIONING_REGISTRATION_ID": "r1", "PROVISIONING_SYMMETRIC_KEY": KEY_A}, "PROVISIONING_IDSCOPE is missing"),
    ({"PROVISIONING_IDSCOPE": "s", "PROVISIONING_SYMMETRIC_KEY": KEY_A}, "PROVISIONING_REGISTRATION_ID is missing"),
    ({"PROVISIONING_IDSCOPE": "s", "PROVISIONING_REGISTRATION_ID": "r"}, "PROVISIONING_SYMMETRIC_KEY or"),
    ({"PROVISIONING_IDSCOPE": "s", "PROVISIONING_REGISTRATION_ID": "r", "PROVISIONING_SYMMETRIC_KEY": KEY_A,
      "PROVISIONING_GROUP_KEY": KEY_B}, "not both"),
    ({"PROVISIONING_IDSCOPE": "s", "PROVISIONING_REGISTRATION_ID": "r", "PROVISIONING_SYMMETRIC_KEY": "!!"},
     "not valid base64"),
    ({"IOTHUB_DEVICE_CONNECTION_STRING": "HostName=h;DeviceId=d"}, "SharedAccessKey is missing"),
    ({"IOTHUB_DEVICE_CONNECTION_STRING": svc("h")}, "needs one with DeviceId"),
    ({"IOTHUB_DEVICE_CONNECTION_STRING": dev("h"), "IOTHUB_CA_FILE": "/nonexistent/ca.pem"}, "does not exist"),
])
def test_device_errors_are_one_line_without_keys(isolated, values, fragment):
    env, dotenv = isolated
    env.update(values)
    with pytest.raises(SettingsError) as err:
        resolve_device_settings({}, env=env, dotenv_path=dotenv)
    message = str(err.value)
    assert fragment in message and "\n" not in message
    assert KEY_A not in message and KEY_B not in message
    assert "(environment)" in message or "IOTHUB_CA_FILE" in message or "PROVISIONING" in message


def test_service_rejects_device_string(isolated):
    env, dotenv = isolated
    with pytest.raises(SettingsError, match="IOTHUB_CONNECTION_STRING .command line.: this is a device"):
        resolve_service_settings({"IOTHUB_CONNECTION_STRING": dev("h")}, env=env, dotenv_path=dotenv)


def test_describe_names_hub_and_never_the_key(isolated):
    env, dotenv = isolated
    s = resolve_service_settings({"IOTHUB_CONNECTION_STRING": svc("h.azure-devices.net")}, env=env,
                                 dotenv_path=dotenv)
    assert "h.azure-devices.net" in s.describe() and KEY_A not in s.describe()
