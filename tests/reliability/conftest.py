"""Fixtures for the reliability suite: a real emulator (TLS on 8883, HTTPS REST) on its own loopback
address, watched for tracebacks; registered devices with known keys; the signed REST caller."""

from __future__ import annotations

import base64
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from emulator.testing import Emulator

from .support import LogWatch, Rest

WATCHED_LOGGERS = ("emulator", "asyncio", "aiohttp")


@pytest.fixture(autouse=True)
def _no_global_ca_overrides(monkeypatch):
    """Some machines set these globally; the tests pass the emulator's CA explicitly."""
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE", "mqtt_proxy", "MQTT_PROXY"):
        monkeypatch.delenv(name, raising=False)


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@dataclass
class RunningEmulator:
    """An Emulator and what clients need to reach it."""

    threaded: Emulator
    address: str
    host_name: str
    rest_port: int
    ca_file: str
    log: LogWatch

    @property
    def ca_pem(self) -> str:
        return Path(self.ca_file).read_text()

    @property
    def hub(self):
        return self.threaded.hub

    def rest(self) -> Rest:
        return Rest(self.host_name, self.address, self.rest_port, self.ca_file)

    def add_device(self, prefix: str = "rel", *, status: str = "enabled") -> tuple[str, str]:
        """Register a device with a fresh key; returns (device id, key)."""
        device_id, key = f"{prefix}-{uuid.uuid4().hex[:10]}", new_key()
        self.threaded.call(lambda: self.hub.create_device(device_id, primary_key=key, status=status))
        return device_id, key


def start_emulator(data_dir: Path, **config_options) -> tuple[Emulator, LogWatch]:
    watch = LogWatch()
    for name in WATCHED_LOGGERS:
        logging.getLogger(name).addHandler(watch)
    emulator = Emulator(data_dir=data_dir, write_discovery=True, discovery_file=data_dir / "discovery.json",
                        **config_options)
    return emulator.start(), watch


def stop_emulator(threaded: Emulator, watch: LogWatch) -> None:
    threaded.stop()
    for name in WATCHED_LOGGERS:
        logging.getLogger(name).removeHandler(watch)


def running(threaded: Emulator, watch: LogWatch) -> RunningEmulator:
    server = threaded.server
    assert server.certificates is not None and server.rest_port is not None
    return RunningEmulator(threaded, server.config.address, server.host_name, server.rest_port,
                           str(server.certificates.ca_cert), watch)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """One emulator per test module; tests use their own devices. Fails the module's last test
    if the emulator logged any traceback or error (a crash, or a stack trace it kept to itself)."""
    threaded, watch = start_emulator(tmp_path_factory.mktemp("emulator"))
    try:
        yield running(threaded, watch)
    finally:
        stop_emulator(threaded, watch)
    assert not watch.problems, f"the emulator logged errors:\n{watch.describe()}"
