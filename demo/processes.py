"""The demo's child processes: the emulator and the device listeners, each a real program in its own
session, with its output in a log file; every wait is bounded and every child is stopped at the end.

Children run in a new session, so a Ctrl-C in the terminal reaches only the demo, which then stops
them in order (devices first, then the emulator). On Linux they also get SIGTERM if the demo itself
dies without cleaning up (PR_SET_PDEATHSIG), so no process is ever left behind.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from emulator import loopback
from emulator.loopback import EMULATOR_PORTS
from hubsettings import EmulatorInfo, read_discovery

#: Settings that would point the children somewhere else than the demo's own emulator.
HUB_SETTINGS = (
    "IOTHUB_CONNECTION_STRING", "IOTHUB_DEVICE_CONNECTION_STRING", "IOTHUB_DEVICE_ID", "IOTHUB_CA_FILE",
    "PROVISIONING_HOST", "PROVISIONING_IDSCOPE", "PROVISIONING_REGISTRATION_ID",
    "PROVISIONING_SYMMETRIC_KEY", "PROVISIONING_GROUP_KEY", "IOTHUB_EMULATOR_DISCOVERY",
    "IOTHUB_EMULATOR_HOME", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "mqtt_proxy", "MQTT_PROXY",
)
STOP_TIMEOUT = 15.0  # seconds a child gets to stop after SIGTERM before it is killed
_PR_SET_PDEATHSIG = 1


class ProcessFailed(Exception):
    """A child did not start, exited early, or did not say what was expected in time."""


def child_env(discovery_file: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every child: the user's, minus hub settings, plus our discovery file.

    The children then find the demo's emulator the way a user's programs find theirs (the discovery
    file), and a user's Azure settings in the environment can never send the demo to a real hub.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in HUB_SETTINGS}
    env["IOTHUB_EMULATOR_DISCOVERY"] = str(discovery_file)
    env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr interleave in the order they were written
    return env


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """preexec_fn: the child gets SIGTERM when the demo dies, however it dies (Linux only)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the demo's own cleanup is all there is


LINUX_DEATH_SIGNAL = die_with_parent if sys.platform.startswith("linux") else None


def free_loopback_address(ports: Sequence[int] = EMULATOR_PORTS, rng: random.Random | None = None,
                          tries: int = 40) -> str:
    """A 127.0.0.X on which all `ports` are free right now, so the demo never meets a user's emulator
    (127.0.0.1) or another demo."""
    try:
        return loopback.free_loopback_address(ports, tries=tries, rng=rng)
    except loopback.NoFreeLoopbackAddress as e:
        raise ProcessFailed(str(e)) from None


@dataclass
class ChildProcess:
    """One program started by the demo; its stdout and stderr go to `log_file`."""

    name: str
    args: list[str]
    log_file: Path
    env: dict[str, str]
    cwd: Path
    process: subprocess.Popen | None = None
    _terminated: bool = False

    def start(self) -> ChildProcess:
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                cwd=self.cwd, start_new_session=True,
                preexec_fn=LINUX_DEATH_SIGNAL)
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str,
                   sleep: Callable[[float], None] = time.sleep) -> None:
        """Poll ready() until true; fail when the process exits first or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.running():
                code = self.process.returncode if self.process else None
                raise ProcessFailed(f"{self.name} exited with code {code} before {what}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise ProcessFailed(f"{self.name}: no {what} within {timeout:g} s:\n{self.tail()}")
            sleep(0.05)

    def wait_for_line(self, text: str, timeout: float) -> None:
        self.wait_until(lambda: text in self.output(), timeout, f"'{text}'")

    def terminate(self) -> None:
        """SIGTERM once: a second one could arrive after the program removed its handler while
        shutting down, and kill it mid-way."""
        if self.running() and not self._terminated:
            self._terminated = True
            try:
                self.process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code (None if never started)."""
        if self.process is None:
            return None
        self.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout)


def stop_all(children: Iterable[ChildProcess], timeout: float = STOP_TIMEOUT) -> dict[str, int | None]:
    """Signal every child at once, then collect them; returns name -> exit code."""
    children = list(children)
    for child in children:
        child.terminate()
    return {child.name: child.stop(timeout) for child in children}


@dataclass
class Emulator:
    """The demo's emulator process and what its discovery file says."""

    child: ChildProcess
    discovery_file: Path
    info: EmulatorInfo | None = None

    def _discovery_is_ours(self) -> bool:
        try:
            return json.loads(self.discovery_file.read_text()).get("pid") == self.child.pid
        except (OSError, ValueError):
            return False

    def wait_ready(self, timeout: float) -> EmulatorInfo:
        """Until the discovery file names this process and the REST port accepts connections."""
        self.child.wait_until(self._discovery_is_ours, timeout, "its discovery file")
        info = read_discovery(self.discovery_file)
        if info is None:
            raise ProcessFailed(f"{self.child.name}: its discovery file {self.discovery_file} cannot be read")
        self.child.wait_until(lambda: _accepts(info.rest_address, info.rest_port), timeout,
                              f"its REST port {info.rest_port} accepting connections")
        self.info = info
        return info


def _accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def emulator_command(address: str, data_dir: Path, discovery_file: Path) -> list[str]:
    return [sys.executable, "-m", "emulator", "--address", address, "--data-dir", str(data_dir),
            "--discovery-file", str(discovery_file), "--log-level", "info"]


def device_command(*options: str) -> list[str]:
    return [sys.executable, "-m", "device", *options]


def service_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "service", *arguments]
