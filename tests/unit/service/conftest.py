"""Fixtures: fake SDK managers injected at service.hub.manager_factory, a fake clock, a CliRunner."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from click.testing import CliRunner, Result

from service import hub as hub_module
from service.cli import cli
from service.context import AppState

from .fakes import SERVICE_CS, FakeHub, FakeManagerFactory
from .loopback_hub import loopback_hub  # noqa: F401 - a fixture for the real-SDK tests

NOW = dt.datetime(2026, 11, 22, 9, 0, 0, tzinfo=dt.timezone.utc)


@dataclass
class FakeClock:
    """monotonic() and sleep() that never wait: sleeping advances the clock."""

    t: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.t += seconds


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch, tmp_path):
    """No .env, no discovery file and no stray CA variables from the machine running the tests."""
    for name in ("IOTHUB_CONNECTION_STRING", "IOTHUB_CA_FILE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE",
                 "IOTHUB_EMULATOR_DISCOVERY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IOTHUB_EMULATOR_HOME", str(tmp_path / "emulator-home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IOTHUB_CONNECTION_STRING", SERVICE_CS)


@pytest.fixture
def fake_hub(monkeypatch) -> FakeHub:
    hub = FakeHub()
    monkeypatch.setattr(hub_module, "manager_factory", FakeManagerFactory(hub))
    return hub


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Run:
    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.runner = CliRunner()

    def __call__(self, *args: str, tty: bool = False, input: str | None = None) -> Result:
        state = AppState(clock=self.clock.monotonic, sleep=self.clock.sleep, now=lambda: NOW, tty=tty)
        return self.runner.invoke(cli, list(args), obj=state, input=input, catch_exceptions=False)

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def run(fake_hub, clock) -> Run:
    return Run(clock)
