"""What the tutorial-story tests share: a hub to run them against, and the real programs as subprocesses.

`story_hub` is the local emulator (`python -m emulator`, the shared EmulatorProcess of conftest.py, on a
loopback address of its own with its discovery file in a temporary directory), or a real IoT hub when
IOTHUB_E2E_CONNECTION_STRING and IOTHUB_E2E_DEVICE_CONNECTION_STRING are set (skipped otherwise,
saying so). Device listeners run as `python -m device ...`, service commands as `python -m service ...`.
The programs find the emulator through its discovery file, as a user's programs do.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hubsettings import EmulatorInfo, read_discovery
from demo.processes import ChildProcess, child_env, device_command, service_command
from tests.e2e.conftest import EmulatorProcess, free_loopback_address
from tests.e2e.support import wait_for

AZURE_SERVICE_ENV = "IOTHUB_E2E_CONNECTION_STRING"
AZURE_DEVICE_ENV = "IOTHUB_E2E_DEVICE_CONNECTION_STRING"
AZURE_DPS_ENV = ("IOTHUB_E2E_PROVISIONING_HOST", "IOTHUB_E2E_PROVISIONING_IDSCOPE",
                 "IOTHUB_E2E_PROVISIONING_GROUP_KEY")
AZURE_SKIP_REASON = (f"real IoT hub: set {AZURE_SERVICE_ENV} (a service policy connection string) and "
                     f"{AZURE_DEVICE_ENV} (a device connection string) to run the stories against it")
COMMAND_TIMEOUT = 120.0
READY_TIMEOUT = 60.0
READY_LINE = "press Ctrl-C to stop"


def reported(twin: dict, path: str) -> Any:
    node: Any = (twin.get("properties") or {}).get("reported") or {}
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def desired(twin: dict, name: str) -> Any:
    return ((twin.get("properties") or {}).get("desired") or {}).get(name)


def suffix() -> str:
    return uuid.uuid4().hex[:8]


class StoryHub:
    """A hub the stories run against; subclasses say how devices get their identity."""

    name = "hub"

    def __init__(self, env: dict[str, str], work_dir: Path):
        self.env = env
        self.work_dir = work_dir

    def service(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
        """`python -m service ARGS`, as a user runs it (output captured, text)."""
        return subprocess.run(service_command(*args), capture_output=True, text=True, env=self.env,
                              cwd=self.work_dir, timeout=timeout, stdin=subprocess.DEVNULL)

    def service_json(self, *args: str) -> Any:
        result = self.service(*args, "--json")
        assert result.returncode == 0, f"{args} exited {result.returncode}: {result.stderr}"
        return json.loads(result.stdout)

    def device_env(self, **settings: str) -> dict[str, str]:
        return {**self.env, **settings}

    # identities -----------------------------------------------------------------------------------
    def main_device(self) -> tuple[str, dict[str, str], list[str]]:
        """(device id, environment, extra options) of the tutorials' device."""
        raise NotImplementedError

    def fleet(self, prefix: str, count: int) -> tuple[list[str], list[tuple[dict[str, str], list[str]]]]:
        """Device ids, and the (environment, options) of each listener process to start."""
        raise NotImplementedError

    def dps_device(self, device_id: str) -> tuple[dict[str, str], list[str]]:
        raise NotImplementedError

    def received_telemetry(self, device_id: str, count: int = 2) -> list[dict]:
        """The device's first `count` device-to-cloud messages, read as on Azure: `iothub-service monitor`
        on the hub's Event Hubs-compatible endpoint."""
        result = self.service("monitor", device_id, "--start", "earliest", "--count", str(count),
                              "--timeout", "60", "--properties", "--json", timeout=120)
        assert result.returncode == 0, f"monitor exited {result.returncode}: {result.stderr}"
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def close(self) -> None:
        pass


class EmulatorHub(StoryHub):
    name = "emulator"

    def __init__(self, emulator: EmulatorProcess, info: EmulatorInfo, work_dir: Path):
        super().__init__(child_env(emulator.discovery_file), work_dir)
        self.emulator = emulator
        self.info = info

    def main_device(self) -> tuple[str, dict[str, str], list[str]]:
        return "myDeviceId", self.env, []  # pre-registered; found through the discovery file

    def fleet(self, prefix: str, count: int):
        ids = [f"{prefix}{n:03d}" for n in range(1, count + 1)]
        return ids, [(self.env, ["--count", str(count), "--device-id-prefix", prefix])]

    def dps_device(self, device_id: str) -> tuple[dict[str, str], list[str]]:
        return self.env, ["--device-id", device_id]  # any other id goes through the emulator's DPS

    def close(self) -> None:
        code = self.emulator.stop()
        assert code == 0, f"the emulator exited with {code}:\n{self.emulator.log.read_text()[-2000:]}"


class AzureHub(StoryHub):
    """A real IoT hub; fleet devices are created (and deleted again) through the service CLI."""

    name = "azure"

    def __init__(self, work_dir: Path):
        env = child_env(work_dir / "no-emulator-discovery.json")
        env["IOTHUB_CONNECTION_STRING"] = os.environ[AZURE_SERVICE_ENV]
        super().__init__(env, work_dir)
        self.created: list[str] = []

    def main_device(self) -> tuple[str, dict[str, str], list[str]]:
        from hubsettings import parse_connection_string
        text = os.environ[AZURE_DEVICE_ENV]
        device_id = parse_connection_string(text, expect="device").device_id or ""
        return device_id, self.device_env(IOTHUB_DEVICE_CONNECTION_STRING=text), []

    def fleet(self, prefix: str, count: int):
        ids = [f"{prefix}{n:03d}" for n in range(1, count + 1)]
        listeners = []
        for device_id in ids:
            created = self.service("device", "create", device_id)
            assert created.returncode == 0, created.stderr
            self.created.append(device_id)
            text = self.service("device", "connection-string", device_id, "--show-key").stdout.strip()
            listeners.append((self.device_env(IOTHUB_DEVICE_CONNECTION_STRING=text), []))
        return ids, listeners

    def dps_device(self, device_id: str) -> tuple[dict[str, str], list[str]]:
        missing = [name for name in AZURE_DPS_ENV if not os.environ.get(name)]
        if missing:
            pytest.skip(f"DPS on a real hub: set {', '.join(missing)} (a symmetric-key group enrollment)")
        host, scope, key = (os.environ[name] for name in AZURE_DPS_ENV)
        self.created.append(device_id)
        return self.device_env(PROVISIONING_HOST=host, PROVISIONING_IDSCOPE=scope, PROVISIONING_GROUP_KEY=key,
                               PROVISIONING_REGISTRATION_ID=device_id), []

    def close(self) -> None:
        for device_id in self.created:
            self.service("device", "delete", device_id)


def _rest_accepts(info: EmulatorInfo) -> bool:
    try:
        with socket.create_connection((info.rest_address, info.rest_port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", params=["emulator", pytest.param("azure", marks=pytest.mark.azure)])
def story_hub(request, tmp_path_factory) -> Iterator[StoryHub]:
    """The hub every story test runs against, shared by the session (tests use their own ids)."""
    work_dir = tmp_path_factory.mktemp(f"stories-{request.param}")
    if request.param == "azure":
        if not (os.environ.get(AZURE_SERVICE_ENV) and os.environ.get(AZURE_DEVICE_ENV)):
            pytest.skip(AZURE_SKIP_REASON)
        hub: StoryHub = AzureHub(work_dir)
    else:
        data_dir = work_dir / "emulator"
        data_dir.mkdir()
        emulator = EmulatorProcess(free_loopback_address(), data_dir).start()
        try:
            info = read_discovery(emulator.discovery_file)
            assert info is not None, "the emulator wrote no readable discovery file"
            wait_for(lambda: _rest_accepts(info), timeout=READY_TIMEOUT, what="the emulator's REST port")
        except BaseException:
            emulator.stop()
            raise
        hub = EmulatorHub(emulator, info, work_dir)
    try:
        yield hub
    finally:
        hub.close()


class Devices:
    """Device listeners started by one test; all stopped (and checked to stop cleanly) at its end."""

    def __init__(self, hub: StoryHub, work_dir: Path):
        self.hub = hub
        self.work_dir = work_dir
        self.children: list[ChildProcess] = []

    def start(self, name: str, env: dict[str, str], options: list[str]) -> ChildProcess:
        child = ChildProcess(name, device_command(*options), self.work_dir / f"{name}-{len(self.children)}.log",
                             env, self.work_dir)
        self.children.append(child.start())
        return child

    def wait_ready(self, *children: ChildProcess) -> None:
        for child in children:
            child.wait_for_line(READY_LINE, READY_TIMEOUT)

    def main(self, *options: str) -> tuple[str, ChildProcess]:
        device_id, env, extra = self.hub.main_device()
        child = self.start(device_id, env, [*extra, *options])
        self.wait_ready(child)
        return device_id, child

    def fleet(self, prefix: str, count: int, *options: str) -> tuple[list[str], list[ChildProcess]]:
        ids, listeners = self.hub.fleet(prefix, count)
        children = [self.start(f"{prefix}fleet", env, [*extra, *options]) for env, extra in listeners]
        self.wait_ready(*children)
        return ids, children

    def dps(self, device_id: str, *options: str) -> ChildProcess:
        env, extra = self.hub.dps_device(device_id)
        child = self.start(device_id, env, [*extra, *options])
        self.wait_ready(child)
        return child

    def stop_all(self) -> dict[str, int | None]:
        from demo.processes import stop_all
        return stop_all(self.children)


@pytest.fixture
def devices(story_hub, tmp_path) -> Iterator[Devices]:
    started = Devices(story_hub, tmp_path)
    yield started
    codes = started.stop_all()
    unclean = {name: code for name, code in codes.items() if code != 0}
    assert not unclean, f"device listeners did not stop cleanly: {unclean}"


def wait_for_twin(hub: StoryHub, device_id: str, check, what: str, timeout: float = 30.0) -> dict:
    """Poll `twin show --json` until check(twin); returns that twin."""
    def read() -> dict | None:
        twin = hub.service_json("twin", "show", device_id)
        return twin if check(twin) else None
    return wait_for(read, timeout=timeout, interval=0.2, what=what)

