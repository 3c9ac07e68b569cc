"""IoT Hub's port 443 for HTTPS REST and MQTT over WebSockets: the emulator takes it where it may and then
hands out port-less connection strings exactly as Azure does; where it may not, it serves on the fallback
port, says in one line which clients need 443 and the command that allows it, and the project's own
programs work all the same. Both paths run for real here: the refused one in a process that lacks the
right to bind ports below 1024 (a user namespace when the tests run as root)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from emulator import loopback
from hubsettings import wellknown
from tests.e2e.conftest import PROJECT_ROOT, EmulatorProcess, free_loopback_address

pytestmark = pytest.mark.e2e


def unprivileged_prefix() -> tuple[str, ...]:
    """A command prefix under which binding port 443 is refused, or skip saying why none exists here."""
    if not loopback.may_bind(wellknown.REST_PORT):
        return ()  # this user already may not
    prefix = ("unshare", "--user", "--map-root-user")
    probe = subprocess.run([*prefix, sys.executable, "-c", "from emulator import loopback; "
                            "raise SystemExit(0 if not loopback.may_bind(443) else 1)"],
                           cwd=PROJECT_ROOT, capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("no way to run without the right to bind port 443 here (`unshare --user` is unavailable: "
                    f"{probe.stderr.strip()[:200]})")
    return prefix


def service_cli(emulator: EmulatorProcess, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("IOTHUB_CONNECTION_STRING", "REQUESTS_CA_BUNDLE", "IOTHUB_EMULATOR_HOME")}
    env["IOTHUB_EMULATOR_DISCOVERY"] = str(emulator.discovery_file)
    return subprocess.run([sys.executable, "-m", "service", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_without_the_right_to_bind_443_it_falls_back_and_says_how_to_allow_it(tmp_path):
    emulator = EmulatorProcess(free_loopback_address(), tmp_path / "data", command_prefix=unprivileged_prefix())
    try:
        emulator.start()
        assert emulator.rest_port == wellknown.REST_FALLBACK_PORT
        assert emulator.service_connection_string.startswith(
            f"HostName={emulator.address}:{wellknown.REST_FALLBACK_PORT};SharedAccessKeyName=iothubowner;")
        listed = service_cli(emulator, "device", "list")  # the project's own service CLI, port in HostName
        assert listed.returncode == 0, listed.stderr
        assert wellknown.DEVICE_ID in listed.stdout
    finally:
        assert emulator.stop() == 0
    output = emulator.log.read_text()
    notes = [line for line in output.splitlines() if line.startswith("  NOTE:")]
    assert notes == [
        f"  NOTE: HTTPS REST and MQTT over WebSockets are on port 9443 (this user may not bind port 443): devices "
        f"using MQTT over WebSockets, the Node.js service SDK and az need 443; allow it with "
        f"`{loopback.how_to_allow_port_443()}`, then restart the emulator."]


def test_with_443_the_connection_strings_carry_no_port(tmp_path):
    if not loopback.may_bind(wellknown.REST_PORT):
        pytest.skip(f"this user may not bind port 443 (allow it with `{loopback.how_to_allow_port_443()}`); "
                    "the fallback is tested above")
    emulator = EmulatorProcess(free_loopback_address(), tmp_path / "data")
    try:
        emulator.start()
        assert emulator.rest_port == 443
        assert emulator.service_connection_string.startswith(f"HostName={emulator.address};SharedAccessKeyName=")
        assert emulator.info.device_connection_strings[wellknown.DEVICE_ID].startswith(f"HostName={emulator.address};")
        listed = service_cli(emulator, "device", "list")
        assert listed.returncode == 0, listed.stderr
        assert f"Using IoT hub {emulator.address} with policy iothubowner" in listed.stderr + listed.stdout
    finally:
        assert emulator.stop() == 0
    assert "NOTE:" not in emulator.log.read_text()


def test_emulators_side_by_side_each_take_443_on_their_own_address(tmp_path):
    if not loopback.may_bind(wellknown.REST_PORT):
        pytest.skip(f"this user may not bind port 443 (allow it with `{loopback.how_to_allow_port_443()}`)")
    first = EmulatorProcess(free_loopback_address(), tmp_path / "one")
    try:
        first.start()
        second = EmulatorProcess(loopback.free_loopback_address(exclude=[first.address]), tmp_path / "two")
        try:
            second.start()
            assert (first.rest_port, second.rest_port) == (443, 443)
            for emulator in (first, second):
                listed = service_cli(emulator, "device", "list")
                assert listed.returncode == 0 and f"Using IoT hub {emulator.address} " in listed.stderr + listed.stdout
        finally:
            assert second.stop() == 0
    finally:
        assert first.stop() == 0
