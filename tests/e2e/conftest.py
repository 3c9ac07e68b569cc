"""Fixtures that start a real emulator for the unmodified SDKs.

Each emulator binds its own loopback address 127.0.0.X (the device SDK always dials port 8883), so it
never collides with a user's emulator on 127.0.0.1, and writes its discovery file into the test's
temporary directory, never the user's. Two flavours:
- `emulator`: an emulator.testing.Emulator (the server in a background thread): MQTT/TLS on 8883 and the HTTPS REST front on
  `server.rest_port` of its own 127.0.0.X (443 where this user may bind it, else the fallback 9443), plus the
  in-process API (invoke a method, read the hub);
- `emulator_process`: an emulator.testing.EmulatorProcess (`python -m emulator`), for restarts with the same
  data dir.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator import loopback
from emulator.server import EmulatorConfig
from emulator.testing import Emulator, EmulatorProcess

__all__ = ["EmulatorProcess", "free_loopback_address"]  # shared with the other suites

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
    data_dir = tmp_path_factory.mktemp("emulator")
    with Emulator(data_dir=data_dir, write_discovery=True, discovery_file=data_dir / "discovery.json") as running:
        yield running


@pytest.fixture
def emulator_process(tmp_path):
    """A factory-started emulator subprocess (call .start()); always stopped at the end."""
    running = EmulatorProcess(free_loopback_address(), tmp_path / "data")
    running.data_dir.mkdir()
    yield running
    running.stop()
