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
    config = EmulatorConfig(address="127.0.0.1", mqtt_port=0, rest_port=0, amqp_port=0, data_dir=tmp_path / "data",
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
    assert f"HostName=localhost:{server.rest_port};SharedAccessKeyName=iothubowner" in masked  # not on 443
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


def test_a_sigterm_as_soon_as_it_is_ready_still_stops_it_cleanly(monkeypatch):
    """Harnesses send SIGTERM once the discovery file appears, which is written during start: the handlers
    must be in place by then, or the emulator dies by the signal (exit -15) instead of stopping."""
    import asyncio
    import os
    import signal

    class SignalledDuringStart:
        stopped = False

        async def start(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)

        async def stop(self) -> None:
            self.stopped = True

    monkeypatch.setattr(cli, "describe", lambda server, show_keys: "banner")
    reached_the_default = []
    previous = signal.signal(signal.SIGTERM, lambda *_: reached_the_default.append(True))
    server = SignalledDuringStart()
    try:
        asyncio.run(asyncio.wait_for(cli._serve(server, False), 10))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert server.stopped and not reached_the_default


# ---- IoT Hub's port 443, and the fallback when it cannot be had ----------------------------------------

def _free_address_where_443_is_allowed() -> str:
    from emulator import loopback
    if not loopback.may_bind(443):
        pytest.skip("this user may not bind port 443 (the fallback is tested below)")
    return loopback.free_loopback_address((0, 443), tries=30)


async def test_service_front_on_443_hands_out_port_less_connection_strings(tmp_path):
    address = _free_address_where_443_is_allowed()
    config = EmulatorConfig(address=address, mqtt_port=0, amqp_port=0, data_dir=tmp_path / "data",
                            discovery_file=tmp_path / "discovery.json")
    server = EmulatorServer(config)
    await server.start()
    try:
        from hubsettings import read_discovery
        info = read_discovery(tmp_path / "discovery.json")
        banner = cli.describe(server, show_keys=False)
    finally:
        await server.stop()
    assert server.rest_port_note is None and info.rest_port == 443
    assert info.service_connection_string.startswith(f"HostName={address};SharedAccessKeyName=iothubowner;")
    assert f"HostName={address};SharedAccessKeyName=iothubowner" in banner and "NOTE" not in banner


async def test_443_taken_falls_back_and_says_so_in_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        fallback = _unused_port()
        config = EmulatorConfig(address="127.0.0.1", mqtt_port=0, rest_port=port, rest_fallback_port=fallback,
                                amqp_port=0, data_dir=tmp_path / "data", discovery_file=tmp_path / "discovery.json")
        server = EmulatorServer(config)
        await server.start()
        try:
            banner = cli.describe(server, show_keys=False)
            info = server.info()
        finally:
            await server.stop()
    assert server.rest_port == fallback and info.rest_port == fallback
    assert info.service_connection_string.startswith(f"HostName=localhost:{fallback};")
    notes = [line for line in banner.splitlines() if "NOTE" in line]
    assert notes == [f"  NOTE: HTTPS REST and MQTT over WebSockets are on port {fallback} (127.0.0.1:{port} is taken "
                     f"by another program): devices using MQTT over WebSockets, the Node.js service SDK and az need "
                     f"{port}; free it or use another --address, then restart the emulator."]


async def test_443_not_permitted_falls_back_and_names_the_command_that_allows_it(tmp_path, monkeypatch):
    """As root 443 is always permitted: the refusal an unprivileged user meets is simulated here (and run for
    real as an unprivileged user in tests/e2e/test_port_443.py)."""
    import errno

    from emulator import loopback
    real = loopback.bind_error
    monkeypatch.setattr(loopback, "bind_error",
                        lambda address, port: errno.EACCES if port == 443 else real(address, port))
    fallback = _unused_port()
    config = EmulatorConfig(address="127.0.0.1", mqtt_port=0, rest_fallback_port=fallback, amqp_port=0,
                            data_dir=tmp_path / "data", discovery_file=tmp_path / "discovery.json")
    server = EmulatorServer(config)
    await server.start()
    try:
        banner = cli.describe(server, show_keys=False)
    finally:
        await server.stop()
    assert server.rest_port == fallback
    assert "this user may not bind port 443" in server.rest_port_note
    assert f"`{loopback.how_to_allow_port_443()}`" in server.rest_port_note
    assert sum("NOTE" in line for line in banner.splitlines()) == 1


def test_help_says_where_the_service_front_goes():
    """--rest-port given: that port or exit 3 (test_taken_rest_port_is_one_line_and_exit_3), never a fallback."""
    text = " ".join(CliRunner().invoke(cli.main, ["--help"]).output.split())
    assert "443 as on IoT Hub" in text and "9443 when this user may not bind 443" in text


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- dps compute-device-key -------------------------------------------------------------------------------

def test_compute_device_key_defaults_to_the_well_known_group_key():
    from hubsettings import derive_device_key
    result = CliRunner().invoke(cli.main, ["dps", "compute-device-key", "--registration-id", "sensor-7"])
    assert result.exit_code == 0
    # Computed independently: printf sensor-7 | openssl dgst -sha256 -mac HMAC -macopt hexkey:<group key> -binary | base64
    assert result.output == derive_device_key(wellknown.DPS_GROUP_KEY, "sensor-7") + "\n"
    assert result.output == "AVaKqGPtDyelMAm4CM9jhFuEDf00EfRRbhqGYY14v1o=\n"


def test_compute_device_key_with_a_given_group_key():
    group_key = "c2VjcmV0LWdyb3VwLWtleS1mb3ItdGVzdHM="
    result = CliRunner().invoke(cli.main, ["dps", "compute-device-key", "--registration-id", "dev-1",
                                           "--group-key", group_key])
    assert result.exit_code == 0
    import base64
    import hashlib
    import hmac
    expected = base64.b64encode(hmac.new(base64.b64decode(group_key), b"dev-1", hashlib.sha256).digest()).decode()
    assert result.output.strip() == expected


@pytest.mark.parametrize("args, complaint", [
    (["--registration-id", "d", "--group-key", "not base64!"], "--group-key: is not valid base64"),
    (["--registration-id", " "], "--registration-id: must not be empty"),
    ([], "Missing option '--registration-id'"),
])
def test_compute_device_key_bad_input_is_one_line_and_exit_2(args, complaint):
    result = CliRunner().invoke(cli.main, ["dps", "compute-device-key", *args])
    assert result.exit_code == 2
    assert complaint in result.output and "Traceback" not in result.output


def test_a_subcommand_does_not_start_the_emulator(tmp_path):
    result = CliRunner().invoke(cli.main, ["--discovery-file", str(tmp_path / "d.json"), "dps", "compute-device-key",
                                           "--registration-id", "x"])
    assert result.exit_code == 0 and not (tmp_path / "d.json").exists() and "DEVELOPMENT ONLY" not in result.output


# ---- loopback: which ports an emulator can have -----------------------------------------------------------

def test_a_taken_port_is_not_free_but_a_refused_one_is_left_to_the_fallback(monkeypatch):
    import errno

    from emulator import loopback
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert loopback.bind_error("127.0.0.1", port) == errno.EADDRINUSE
        assert not loopback.ports_free("127.0.0.1", [port])
    assert loopback.bind_error("127.0.0.1", port) is None
    monkeypatch.setattr(loopback, "bind_error", lambda address, p: errno.EACCES if p == 443 else None)
    assert loopback.ports_free("127.0.0.1", [443, 9443])  # the emulator serves 9443 instead of 443
    assert not loopback.may_bind(443)


def test_the_address_picker_skips_an_address_whose_amqp_port_is_taken(monkeypatch):
    """An emulator with default settings binds AMQP too: an address with 5671 taken would fail its start."""
    import errno
    import random

    from emulator import loopback
    first = random.Random(7).sample(range(2, 255), 2)[0]
    busy = f"127.0.0.{first}"
    monkeypatch.setattr(loopback, "bind_error",
                        lambda address, port: errno.EADDRINUSE if (address, port) == (busy, 5671) else None)
    assert wellknown.AMQP_PORT in loopback.EMULATOR_PORTS
    assert loopback.free_loopback_address(rng=random.Random(7)) != busy
    assert loopback.free_loopback_address((wellknown.MQTT_PORT,), rng=random.Random(7)) == busy
