"""The one line on stderr that says which hub a command uses (human mode only, never with --json or
--help), as the device listener does; with nothing configured it names the local emulator."""

from __future__ import annotations

import json

import pytest
import requests
from click.testing import CliRunner

from hubsettings import wellknown
from hubsettings.discovery import EmulatorInfo, write_discovery
from service.cli import cli

from .fakes import HOST, SERVICE_KEY, connection_error, twin_json


@pytest.fixture
def twin(fake_hub):
    fake_hub.set_twins("d1", twin_json("d1"))


def invoke(*args: str):
    """As a user runs it: no AppState given, so the CLI makes its own."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_human_mode_says_which_hub_on_stderr(twin):
    result = invoke("twin", "show", "d1")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"Using IoT hub {HOST} with policy iothubowner (from environment)"]
    assert "Using IoT hub" not in result.stdout
    assert SERVICE_KEY not in result.output


def test_json_mode_prints_no_hub_line(twin):
    result = invoke("twin", "show", "d1", "--json")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert json.loads(result.stdout)["deviceId"] == "d1"


def test_help_prints_no_hub_line():
    result = invoke("twin", "show", "--help")
    assert result.exit_code == 0 and result.stderr == ""


def test_bad_input_fails_before_naming_a_hub(fake_hub):
    result = invoke("twin", "update", "d1", "--desired", "{not json")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0].startswith("Error: --desired is not valid JSON")
    assert len(result.stderr.splitlines()) == 1


def test_nothing_configured_names_the_running_local_emulator(fake_hub, monkeypatch, tmp_path):
    monkeypatch.delenv("IOTHUB_CONNECTION_STRING")
    discovery = tmp_path / "discovery.json"
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    write_discovery(EmulatorInfo(
        host_name="127.0.0.9", mqtt_address="127.0.0.9", mqtt_port=8883, rest_address="127.0.0.9",
        rest_port=9443, ca_file=str(ca),
        service_connection_string=wellknown.service_connection_string("127.0.0.9", 9443)), discovery)
    monkeypatch.setenv("IOTHUB_EMULATOR_DISCOVERY", str(discovery))
    fake_hub.set_twins("d1", twin_json("d1"))
    result = invoke("twin", "show", "d1")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == (
        f"Using IoT hub 127.0.0.9:9443 with policy iothubowner (local emulator, from discovery file {discovery})")
    assert wellknown.POLICIES["iothubowner"][0] not in result.output


def test_nothing_configured_and_no_emulator_says_how_to_start_one(fake_hub, monkeypatch, tmp_path):
    monkeypatch.delenv("IOTHUB_CONNECTION_STRING")
    monkeypatch.setenv("IOTHUB_EMULATOR_DISCOVERY", str(tmp_path / "no-discovery.json"))
    fake_hub.fail("get_twin", connection_error(requests.exceptions.ConnectionError("Connection refused")))
    result = invoke("twin", "show", "d1")
    lines = result.stderr.splitlines()
    assert result.exit_code == 12, result.output
    assert lines == [
        "Using IoT hub localhost with policy iothubowner (local emulator, from well-known emulator defaults)",
        "Error: cannot reach the IoT hub at localhost (connection refused); the local emulator is not "
        "running: start it with `iothub-emulator`, or set IOTHUB_CONNECTION_STRING for an Azure IoT hub"]


def test_an_azure_connection_string_touches_nothing_of_the_emulator(twin, monkeypatch, tmp_path):
    """A running emulator's discovery file is there, but the Azure string wins and no CA is added."""
    discovery = tmp_path / "discovery.json"
    write_discovery(EmulatorInfo(
        host_name="localhost", mqtt_address="127.0.0.1", mqtt_port=8883, rest_address="127.0.0.1",
        rest_port=9443, ca_file=str(tmp_path / "ca.pem"),
        service_connection_string=wellknown.service_connection_string()), discovery)
    monkeypatch.setenv("IOTHUB_EMULATOR_DISCOVERY", str(discovery))
    from service.context import AppState
    settings = AppState().settings()
    assert settings.ca_file is None and not settings.is_emulator
    result = invoke("twin", "show", "d1")
    assert result.stderr.splitlines() == [f"Using IoT hub {HOST} with policy iothubowner (from environment)"]
