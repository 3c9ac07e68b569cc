"""The real device listener (`python -m device`) against a real emulator: a device deleted or disabled
while its listener runs is dropped, its reconnect is refused (the SDK then gives up for good), and the
listener stops by itself with exit code 4 and one error line, instead of sitting there looking alive."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import PROJECT_ROOT
from tests.e2e.support import unique_device_id, wait_for

pytestmark = pytest.mark.e2e

EXIT_WITHIN = 60.0  # the SDK retries the dropped connection at once; generous for a loaded machine


def start_listener(emulator, device_id: str, work_dir: Path) -> tuple[subprocess.Popen, Path, Path]:
    connection_string = emulator.call(emulator.server.device_connection_string, device_id)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IOTHUB_", "PROVISIONING_"))}
    env.update(PYTHONUNBUFFERED="1", IOTHUB_EMULATOR_HOME=str(work_dir / "home"))
    out, err = work_dir / "stdout.log", work_dir / "stderr.log"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "device", "--connection-string", connection_string,
             "--ca-file", str(emulator.server.certificates.ca_cert), "--json-logs", "--no-telemetry",
             "--connect-timeout", "30"],
            cwd=PROJECT_ROOT, env=env, stdout=stdout, stderr=stderr)
    return process, out, err


def messages(path: Path) -> list[str]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            found.append(json.loads(line).get("message", line))
        except ValueError:
            found.append(line)
    return found


@pytest.mark.parametrize("change", ["deleted", "disabled"])
def test_a_device_deleted_or_disabled_while_running_stops_the_listener_with_exit_4(emulator, tmp_path, change):
    device_id = unique_device_id("refused")
    emulator.call(emulator.hub.create_device, device_id)
    process, out, err = start_listener(emulator, device_id, tmp_path)
    try:
        def ready():
            assert process.poll() is None, f"the listener exited early:\n{out.read_text()}\n{err.read_text()}"
            return any(m.startswith("ready") for m in messages(out))
        wait_for(ready, timeout=60, what="the listener to be ready")

        if change == "deleted":
            emulator.call(emulator.hub.delete_device, device_id)
        else:
            emulator.call(emulator.hub.update_device, device_id, status="disabled")
        code = process.wait(EXIT_WITHIN)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    assert code == 4, f"{out.read_text()}\n{err.read_text()}"
    events = messages(out)
    assert any(m.startswith("the hub refused this device's credentials") for m in events), events
    error_lines = err.read_text().splitlines()
    assert len(error_lines) == 1 and error_lines[0].startswith(
        f"Error: IoT hub {emulator.server.host_name} refused the device's credentials on a reconnect"), error_lines
    assert "Traceback" not in out.read_text() + err.read_text()
