"""The conformance part: the emulator driven by clients this project did not write (Microsoft's Node.js SDKs
from npm, the mosquitto command-line clients, hand-written MQTT bytes). `make test` installs them
(`make conformance-deps`); a test skips, saying why, only where one cannot be had.

Each module gets its own emulator on its own 127.0.0.X, serving HTTPS REST and MQTT over WebSockets on 443
where this user may bind it (as on IoT Hub), else on the fallback port.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from emulator import loopback
from emulator.server import ThreadedEmulator
from hubsettings import wellknown
from tests.e2e.conftest import isolated_config

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE_PACKAGES = ("azure-iot-device", "azure-iot-device-mqtt", "azure-iothub", "azure-iot-provisioning-device",
                 "azure-iot-provisioning-device-mqtt", "azure-iot-security-symmetric-key")
WAIT = 60.0  # generous bound for a Node process on a loaded 2-core machine; never reached when things work
NEEDS_443 = (f"needs the emulator on port 443, which this user may not bind: allow it with "
             f"`{loopback.how_to_allow_port_443()}`")


@pytest.fixture(autouse=True)
def _no_global_ca_overrides(monkeypatch):
    """Every client here is told about the emulator's CA explicitly."""
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "mqtt_proxy", "MQTT_PROXY"):
        monkeypatch.delenv(name, raising=False)


@dataclass
class Hub:
    """A running emulator and what third-party clients need to reach it."""

    threaded: ThreadedEmulator
    address: str
    host_name: str
    rest_port: int
    ca_file: str
    service_connection_string: str

    @property
    def hub(self):
        return self.threaded.hub

    @property
    def on_443(self) -> bool:
        return self.rest_port == wellknown.REST_PORT

    def add_device(self, prefix: str) -> tuple[str, str]:
        """Register a device with a fresh key; returns (device id, key)."""
        device_id, key = f"{prefix}-{uuid.uuid4().hex[:8]}", base64.b64encode(os.urandom(32)).decode()
        self.threaded.call(lambda: self.hub.create_device(device_id, primary_key=key))
        return device_id, key

    def device_connection_string(self, device_id: str, key: str) -> str:
        return wellknown.device_connection_string(self.host_name, device_id, key)

    def telemetry(self, device_id: str) -> list[Any]:
        return self.threaded.call(lambda: self.hub.telemetry.messages(device_id))


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    config = isolated_config(tmp_path_factory, "conformance")
    with ThreadedEmulator(config) as threaded:
        server = threaded.server
        info = server.info()
        yield Hub(threaded, config.address, server.host_name, info.rest_port, info.ca_file,
                  info.service_connection_string)


# ---- Node.js ------------------------------------------------------------------------------------------------

def node_missing() -> str | None:
    """Why the Node.js clients cannot run here, or None."""
    if not shutil.which("node"):
        return "Node.js is not installed (`make conformance-deps` installs it with apt-get where it can)"
    absent = [name for name in NODE_PACKAGES if not (NODE_DIR / "node_modules" / name / "package.json").is_file()]
    if absent:
        return (f"the Node.js packages {', '.join(absent)} are not installed in {NODE_DIR}/node_modules "
                "(`make conformance-deps` runs npm ci; it needs npm and the npm registry)")
    return None


@pytest.fixture(scope="session")
def node() -> str:
    reason = node_missing()
    if reason:
        pytest.skip(reason)
    return shutil.which("node") or "node"


def node_env(hub: Hub, **variables: str) -> dict[str, str]:
    """The environment of a Node client: the emulator's CA trusted through NODE_EXTRA_CA_CERTS only."""
    env = {k: v for k, v in os.environ.items() if k not in ("NODE_EXTRA_CA_CERTS", "NODE_TLS_REJECT_UNAUTHORIZED")}
    env.update(NODE_EXTRA_CA_CERTS=hub.ca_file, **variables)
    return env


def run_node(node: str, script: str, env: dict[str, str], *args: str, timeout: float = WAIT * 3) -> dict[str, Any]:
    """Run a script to its end; its last stdout line is its JSON result."""
    done = subprocess.run([node, script, *args], cwd=NODE_DIR, env=env, capture_output=True, text=True,
                          timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines, f"{script} printed nothing (exit {done.returncode}):\n{done.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert "fatal" not in result, f"{script}: {result['fatal']}\n{done.stderr[-3000:]}"
    return result


class NodeProcess:
    """A long-running Node client that prints one JSON event per line; `stop` writes "stop" on its stdin."""

    def __init__(self, node: str, script: str, env: dict[str, str], *args: str):
        self.process = subprocess.Popen([node, script, *args], cwd=NODE_DIR, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self._stderr.extend(self.process.stderr), daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            if line.strip():
                self.events.put(json.loads(line))

    def wait_for(self, event: str, timeout: float = WAIT, **matching: Any) -> dict[str, Any]:
        """The next event of this kind (matching the given fields); fails on an error event or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no '{event}' event; saw {self.seen}\n{''.join(self._stderr)[-3000:]}") from None
            self.seen.append(got)
            if got.get("event") == "error":
                raise AssertionError(f"the Node client failed: {got}\n{''.join(self._stderr)[-3000:]}")
            if got.get("event") == event and all(got.get(k) == v for k, v in matching.items()):
                return got

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write("stop\n")
                self.process.stdin.flush()
                self.process.wait(WAIT)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


# ---- mosquitto ----------------------------------------------------------------------------------------------

MOSQUITTO_TOOLS = ("mosquitto_pub", "mosquitto_sub", "mosquitto_rr")


@pytest.fixture(scope="session")
def mosquitto() -> dict[str, str]:
    found = {tool: shutil.which(tool) for tool in MOSQUITTO_TOOLS}
    absent = [tool for tool, path in found.items() if not path]
    if absent:
        pytest.skip(f"{', '.join(absent)} not installed: install mosquitto-clients "
                    "(`make conformance-deps` does with apt-get where it can)")
    return {tool: str(path) for tool, path in found.items()}
