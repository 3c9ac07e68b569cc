"""`iothub-emulator`: options, the start banner (keys masked unless asked), start-up failures as one line."""

import socket

import pytest
from click.testing import CliRunner

from emulator import cli
from emulator.server import EmulatorConfig, EmulatorServer, default_host_name
from hubsettings import wellknown


def test_help_documents_every_option():
    result = CliRunner().invoke(cli.main, ["--help"])
    assert result.exit_code == 0
    for option in ("--address", "--host-name", "--mqtt-port", "--rest-port", "--data-dir", "--in-memory", "--log-level",
                   "--show-keys", "--discovery-file", "--no-discovery"):
        assert option in result.output


def test_in_memory_and_data_dir_exclude_each_other(tmp_path):
    result = CliRunner().invoke(cli.main, ["--in-memory", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "exclude each other" in result.output


def test_taken_address_is_one_line_and_exit_3(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli.main, ["--address", "127.0.0.1", "--mqtt-port", str(port), "--rest-port", "0",
                                               "--in-memory",
                                               "--no-discovery", "--log-level", "error"])
    assert result.exit_code == cli.EXIT_ADDRESS_IN_USE
    assert result.output.strip() == f"Error: 127.0.0.1:{port} is already in use (another emulator or program " \
                                    "listens there); stop it or choose another --address"


def test_taken_rest_port_is_one_line_and_exit_3(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli.main, ["--address", "127.0.0.1", "--mqtt-port", "0", "--rest-port", str(port),
                                               "--in-memory", "--no-discovery", "--log-level", "error"])
    assert result.exit_code == cli.EXIT_ADDRESS_IN_USE
    assert result.output.strip().splitlines() == [
        f"Error: 127.0.0.1:{port} is already in use (another emulator or program listens there); stop it or "
        "choose another --rest-port"]


def test_unusable_data_dir_is_one_line_and_exit_1(tmp_path):
    (tmp_path / "hub.sqlite3").mkdir()
    result = CliRunner().invoke(cli.main, ["--address", "127.0.0.1", "--mqtt-port", "0", "--data-dir", str(tmp_path),
                                           "--no-discovery", "--log-level", "error"])
    assert result.exit_code == cli.EXIT_START_FAILED
    assert result.output.startswith("Error: cannot open the store")
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("address, host", [("127.0.0.1", "localhost"), ("::1", "localhost"), ("0.0.0.0", "localhost"),
                                           ("127.0.0.5", "127.0.0.5"), ("10.1.2.3", "10.1.2.3")])
def test_default_host_name(address, host):
    assert default_host_name(address) == host


async def started(tmp_path, **overrides):
    config = EmulatorConfig(address="127.0.0.1", mqtt_port=0, rest_port=0, data_dir=tmp_path / "data",
                            discovery_file=tmp_path / "discovery.json", **overrides)
    server = EmulatorServer(config)
    await server.start()
    return server


async def test_banner_masks_keys_unless_asked(tmp_path):
    server = await started(tmp_path)
    try:
        masked = cli.describe(server, show_keys=False)
        shown = cli.describe(server, show_keys=True)
    finally:
        await server.stop()
    secrets = [wellknown.DEVICE_KEY, wellknown.POLICIES["iothubowner"][0], wellknown.DPS_GROUP_KEY]
    assert not any(secret in masked for secret in secrets)
    assert all(secret in shown for secret in secrets)
    assert "DEVELOPMENT ONLY" in masked
    assert f"127.0.0.1:{server.mqtt_port}" in masked
    assert f"HostName=localhost:{server.rest_port};SharedAccessKeyName=iothubowner" in masked
    assert f"Services (HTTPS REST):   127.0.0.1:{server.rest_port}" in masked


async def test_discovery_file_is_written_at_start_and_removed_at_stop(tmp_path):
    from hubsettings import read_discovery
    server = await started(tmp_path)
    info = read_discovery(tmp_path / "discovery.json")
    assert info is not None and info.host_name == "localhost" and info.mqtt_port == server.mqtt_port
    assert info.rest_port == server.rest_port
    assert info.service_connection_string.startswith(f"HostName=localhost:{server.rest_port};")
    assert info.ca_file == str(tmp_path / "data" / "certs" / "ca.pem")
    assert info.provisioning_id_scope == wellknown.DPS_ID_SCOPE
    await server.stop()
    assert not (tmp_path / "discovery.json").exists()


async def test_no_discovery_writes_nothing(tmp_path):
    server = await started(tmp_path, write_discovery=False)
    await server.stop()
    assert not (tmp_path / "discovery.json").exists()


def test_python_dash_m_emulator_runs_until_sigint_and_exits_0(tmp_path):
    """The real entry point in a subprocess: banner without keys, discovery file, clean Ctrl-C."""
    import json
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    discovery = tmp_path / "discovery.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--address", "127.0.0.1", "--mqtt-port", "0", "--rest-port", "0",
         "--in-memory",
         "--discovery-file", str(discovery), "--log-level", "warning"],
        cwd=Path(__file__).resolve().parents[3], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (discovery.exists() and json.loads(discovery.read_text() or "{}").get("pid") == process.pid):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "DEVELOPMENT ONLY" in out and "HostName=localhost;DeviceId=myDeviceId;SharedAccessKey=8cc0…" in out
    assert wellknown.DEVICE_KEY not in out + err
    assert not discovery.exists()
