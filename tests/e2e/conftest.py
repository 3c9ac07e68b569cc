"""Fixtures that start a real emulator for the unmodified SDKs.

Each emulator binds its own loopback address 127.0.0.X (the device SDK always dials port 8883), so it
never collides with a user's emulator on 127.0.0.1, and writes its discovery file into the test's
temporary directory, never the user's. Two flavours:
- `emulator`: an EmulatorServer in a background thread: MQTT/TLS on 8883 and the HTTPS REST front on
  `server.rest_port` of its own 127.0.0.X (443 where this user may bind it, else the fallback 9443), plus
  the in-process API (invoke a method, read the hub);
- `emulator_process`: `python -m emulator` in a subprocess, for restarts with the same data dir.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulator import loopback
from emulator.server import EmulatorConfig, ThreadedEmulator

START_TIMEOUT = 30.0
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_global_ca_overrides(monkeypatch):
    """Some machines set these globally; the tests pass the emulator's CA explicitly."""
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "mqtt_proxy", "MQTT_PROXY"):
        monkeypatch.delenv(name, raising=False)


def free_loopback_address() -> str:
    """A 127.0.0.X whose MQTT (8883) and REST (443, and the fallback 9443) ports are free right now (127.0.0.1
    as a last resort, where it is the only loopback address, e.g. macOS without aliases)."""
    try:
        return loopback.free_loopback_address(tries=30, fall_back_to_127_0_0_1=True)
    except loopback.NoFreeLoopbackAddress as e:
        pytest.skip(str(e))


def isolated_config(tmp_path_factory, name: str = "emulator") -> EmulatorConfig:
    """Default ports on a loopback address of its own; data and discovery file in a fresh temporary dir."""
    data_dir = tmp_path_factory.mktemp(name)
    return EmulatorConfig(address=free_loopback_address(), data_dir=data_dir,
                          discovery_file=data_dir / "discovery.json")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """A threaded emulator shared by a test module (tests use their own device ids)."""
    with ThreadedEmulator(isolated_config(tmp_path_factory)) as running:
        yield running


class EmulatorProcess:
    """`python -m emulator` on its own loopback address and data dir; restartable."""

    def __init__(self, address: str, data_dir: Path, command_prefix: tuple[str, ...] = ()):
        self.address = address
        self.data_dir = data_dir
        self.command_prefix = command_prefix  # e.g. one that runs it without the right to bind port 443
        self.discovery_file = data_dir / "discovery.json"
        self.process: subprocess.Popen | None = None
        self.log = data_dir / "emulator.log"
        self.info: dict = {}  # the discovery file it wrote at its last start (where it listens, its strings)

    @property
    def host_name(self) -> str:
        return self.address

    @property
    def ca_pem(self) -> str:
        return (self.data_dir / "certs" / "ca.pem").read_text()

    def start(self) -> EmulatorProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*self.command_prefix, sys.executable, "-m", "emulator", "--address", self.address, "--data-dir", str(self.data_dir),
                 "--discovery-file", str(self.discovery_file), "--log-level", "info"],
                cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._discovery_is_ours():
            if self.process.poll() is not None:
                raise AssertionError(f"the emulator exited with {self.process.returncode}:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the emulator did not start:\n{self.log.read_text()}")
            time.sleep(0.05)
        self.info = json.loads(self.discovery_file.read_text())
        return self

    @property
    def rest_port(self) -> int:
        return self.info["rest_port"]

    def _discovery_is_ours(self) -> bool:
        try:
            return json.loads(self.discovery_file.read_text()).get("pid") == self.process.pid
        except (OSError, ValueError):
            return False

    def stop(self) -> int | None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(START_TIMEOUT)
        return self.process.returncode if self.process else None


@pytest.fixture
def emulator_process(tmp_path):
    """A factory-started emulator subprocess (call .start()); always stopped at the end."""
    running = EmulatorProcess(free_loopback_address(), tmp_path / "data")
    running.data_dir.mkdir()
    yield running
    running.stop()
