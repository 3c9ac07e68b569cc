from __future__ import annotations

import base64

import pytest

from .fakes import DEVICE_KEY, device_json, http_error


@pytest.fixture
def registered(fake_hub):
    fake_hub.devices["d1"] = device_json("d1")


def test_device_create_generates_two_fresh_keys(run, fake_hub):
    result = run("device", "create", "new1")
    assert result.exit_code == 0, result.output
    (device_id, primary, secondary, status), = fake_hub.calls_to("create_device_with_sas")
    assert (device_id, status) == ("new1", "enabled")
    assert len(base64.b64decode(primary)) == 32 and len(base64.b64decode(secondary)) == 32 and primary != secondary
    assert "Created device new1 (enabled)." in result.stdout
    assert primary not in result.output and secondary not in result.output


def test_device_create_disabled_json_masks_keys(run, fake_hub):
    data = run.json("device", "create", "new1", "--status", "disabled")
    (_, primary, _, status), = fake_hub.calls_to("create_device_with_sas")
    assert status == "disabled" and data["status"] == "disabled"
    shown = data["authentication"]["symmetricKey"]["primaryKey"]
    assert shown != primary and shown.startswith(primary[:4]) and "44 chars" in shown


def test_device_create_existing_exit_9(run, fake_hub, registered):
    result = run("device", "create", "d1")
    assert result.exit_code == 9
    assert result.stderr.startswith("Error: device 'd1' already exists on hub testhub.azure-devices.net")


def test_device_show(run, registered):
    result = run("device", "show", "d1")
    assert result.exit_code == 0
    assert "d1" in result.stdout and "sas" in result.stdout and DEVICE_KEY not in result.output
    assert f"Primary key:    {DEVICE_KEY[:4]}…(48 chars)" in result.stdout
    data = run.json("device", "show", "d1")
    assert data["deviceId"] == "d1" and DEVICE_KEY not in str(data)


def test_never_active_device_says_never_not_year_one(run, registered, fake_hub):
    # The hub's "never" is 0001-01-01T00:00:00Z (the fake's device_json); JSON keeps the hub's value.
    assert "Last activity:  never" in run("device", "show", "d1").stdout
    assert run.json("device", "show", "d1")["lastActivityTime"].startswith("0001-01-01")
    table = run("device", "list").stdout
    assert "never" in table and "0001-01-01" not in table


def test_device_show_unknown(run, fake_hub):
    result = run("device", "show", "ghost")
    assert result.exit_code == 4 and "device 'ghost' not found" in result.stderr


def test_device_list(run, fake_hub):
    fake_hub.devices = {d: device_json(d) for d in ("a", "b", "c")}
    data = run.json("device", "list")
    assert [d["deviceId"] for d in data] == ["a", "b", "c"] and DEVICE_KEY not in str(data)
    assert [d["deviceId"] for d in run.json("device", "list", "--top", "2")] == ["a", "b"]
    assert fake_hub.calls_to("get_devices")[-1] == (2,)
    table = run("device", "list").stdout
    assert all(name in table for name in ("deviceId", "a", "b", "c", "Disconnected"))


def test_device_list_empty(run, fake_hub):
    assert run("device", "list").stdout.strip() == "No devices."


def test_device_delete(run, fake_hub, registered):
    result = run("device", "delete", "d1")
    assert result.exit_code == 0 and result.stdout.strip() == "Deleted device d1."
    assert fake_hub.calls_to("delete_device") == [("d1", None)]
    assert "d1" not in fake_hub.devices


def test_device_delete_json_and_etag(run, fake_hub, registered):
    assert run.json("device", "delete", "d1", "--etag", "MA==") == {"deviceId": "d1", "deleted": True}
    assert fake_hub.calls_to("delete_device") == [("d1", "MA==")]


def test_device_delete_etag_mismatch(run, fake_hub, registered):
    fake_hub.fail("delete_device", http_error(412, {"Message": "ErrorCode:PreconditionFailed;x"}))
    assert run("device", "delete", "d1", "--etag", "old").exit_code == 8


def test_connection_string_is_masked_by_default(run, registered):
    result = run("device", "connection-string", "d1")
    assert result.exit_code == 0
    line = result.stdout.strip()
    assert line.startswith("HostName=testhub.azure-devices.net;DeviceId=d1;SharedAccessKey=")
    assert DEVICE_KEY not in line and DEVICE_KEY[:4] in line


def test_connection_string_show_key(run, registered):
    line = run("device", "connection-string", "d1", "--show-key").stdout.strip()
    assert line == f"HostName=testhub.azure-devices.net;DeviceId=d1;SharedAccessKey={DEVICE_KEY}"
    secondary = run("device", "connection-string", "d1", "--show-key", "--key", "secondary").stdout.strip()
    assert secondary.endswith(f"SharedAccessKey={DEVICE_KEY[::-1]}")


def test_connection_string_json(run, registered):
    data = run.json("device", "connection-string", "d1", "--show-key")
    assert data == {"deviceId": "d1", "connectionString":
                    f"HostName=testhub.azure-devices.net;DeviceId=d1;SharedAccessKey={DEVICE_KEY}"}
    masked = run.json("device", "connection-string", "d1")
    assert DEVICE_KEY not in masked["connectionString"]


def test_connection_string_strips_the_rest_port(run, fake_hub, monkeypatch):
    """The emulator's service string has HostName=localhost:9443; devices always use 8883."""
    from hubsettings import wellknown
    monkeypatch.setenv("IOTHUB_CONNECTION_STRING", wellknown.service_connection_string())
    fake_hub.devices["d1"] = device_json("d1")
    line = run("device", "connection-string", "d1", "--show-key").stdout.strip()
    assert line == f"HostName=localhost;DeviceId=d1;SharedAccessKey={DEVICE_KEY}"


def test_connection_string_of_a_device_without_sas_key(run, fake_hub):
    fake_hub.devices["x"] = {**device_json("x"), "authentication": {"type": "selfSigned"}}
    result = run("device", "connection-string", "x")
    assert result.exit_code == 1 and "has no primary symmetric key" in result.stderr
