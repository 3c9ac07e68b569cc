"""EmulatorProcess: `python -m emulator` in a child process, for tests of the process itself.

A stop and a start again on the same data directory (what survives a restart), SIGKILL (what survives a
crash), the real command line. It is ready when it has written its discovery file (after its listeners
are up), which also tells where it listens and its connection strings.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from hubsettings import wellknown
from hubsettings.discovery import EmulatorInfo, read_discovery

from ..server import default_host_name
from .addresses import START_ATTEMPTS, free_address
from .identity import EmulatorStartError

EXIT_ADDRESS_IN_USE = 3  # emulator.cli
STOP_TIMEOUT = 30.0
#: Trust settings of the parent that must not leak into the emulator (it serves, it does not verify).
CHILD_ENV_DROPPED = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS")


class EmulatorProcess:
    """`python -m emulator` on a loopback address of its own; restartable on the same data directory.

    with EmulatorProcess(data_dir=tmp_path / "data") as emulator:
        ...  # emulator.service_connection_string, emulator.ca_file
        emulator.kill()    # SIGKILL; emulator.start() again reopens the same data

    address: None picks a free 127.0.0.X at the first start and keeps it for restarts. data_dir: None runs
    it --in-memory (a restart then starts empty). extra_args: more command-line options. command_prefix: what
    to run it under (e.g. `unshare --user --map-root-user`: without the right to bind port 443).
    """

    def __init__(self, address: str | None = None, data_dir: str | Path | None = None, *,
                 extra_args: Sequence[str] = (), start_timeout: float = 30, command_prefix: Sequence[str] = ()):
        self._chosen_address = address
        self._in_memory = data_dir is None
        self._temp_dir: str | None = None
        if data_dir is None:
            self._temp_dir = tempfile.mkdtemp(prefix="iothub-emulator-process-")
            data_dir = self._temp_dir
        self.data_dir = Path(data_dir)
        self.discovery_file = self.data_dir / "discovery.json"
        self.log = self.data_dir / "emulator.log"
        self.extra_args = tuple(extra_args)
        self.command_prefix = tuple(command_prefix)
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.info: EmulatorInfo | None = None

    @property
    def event_hub_connection_string(self) -> str | None:
        """As Emulator.event_hub_connection_string (from the discovery file; None before it starts)."""
        return (self.info.event_hub_connection_string or None) if self.info else None

    # ---- where it is -----------------------------------------------------------------------------
    @property
    def address(self) -> str:
        if self._chosen_address is None:
            self._chosen_address = free_address()
        return self._chosen_address

    @property
    def host_name(self) -> str:
        return self.info.host_name if self.info else default_host_name(self.address)

    @property
    def ca_file(self) -> str:
        return self.info.ca_file if self.info else str(self.data_dir / "certs" / "ca.pem")

    @property
    def ca_pem(self) -> str:
        return Path(self.ca_file).read_text()

    @property
    def rest_port(self) -> int:
        return self._started().rest_port

    @property
    def service_connection_string(self) -> str:
        return self._started().service_connection_string

    def device_connection_string(self, device_id: str = wellknown.DEVICE_ID, key: str = wellknown.DEVICE_KEY) -> str:
        """A device connection string (the well-known device unless told otherwise)."""
        return wellknown.device_connection_string(self._started().host_name, device_id, key)

    def _started(self) -> EmulatorInfo:
        if self.info is None:
            raise RuntimeError("the emulator process has not started: call start()")
        return self.info

    # ---- life cycle ------------------------------------------------------------------------------
    def start(self) -> EmulatorProcess:
        """Start (again) and wait until it listens. Raises EmulatorStartError with its log on failure."""
        if self.process is not None and self.process.poll() is None:
            raise EmulatorStartError(f"the emulator process {self.process.pid} is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        picked_here = self._chosen_address is None
        tried: list[str] = []
        for _ in range(START_ATTEMPTS if picked_here else 1):
            tried.append(self.address)
            returncode = self._spawn_and_wait()
            if returncode is None:
                return self
            if not (picked_here and returncode == EXIT_ADDRESS_IN_USE):
                break
            self._chosen_address = free_address(tried)
        raise EmulatorStartError(f"the emulator process exited with {returncode}: {self._last_log_line()} "
                                 f"(log: {self.log})")

    def _spawn_and_wait(self) -> int | None:
        """None once it is ready; its exit code if it exited first."""
        self.discovery_file.unlink(missing_ok=True)
        self.info = None
        command = [*self.command_prefix, sys.executable, "-m", "emulator", "--address", self.address,
                   "--discovery-file", str(self.discovery_file), "--log-level", "info", *self.extra_args]
        command += ["--in-memory"] if self._in_memory else ["--data-dir", str(self.data_dir)]
        env = {k: v for k, v in os.environ.items() if k not in CHILD_ENV_DROPPED}
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_timeout
        while (info := read_discovery(self.discovery_file)) is None or info.pid != self.process.pid:
            if self.process.poll() is not None:
                return self.process.returncode
            if time.monotonic() > deadline:
                self.kill()
                raise EmulatorStartError(f"the emulator process did not start within {self.start_timeout:g} s "
                                         f"(log: {self.log})")
            time.sleep(0.05)
        self.info = info
        return None

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL if it does not stop in time); returns its exit code (0: clean)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode if self.process else None

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no clean-up runs in the emulator."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)

    def close(self) -> None:
        """Stop, and remove the temporary directory of an in-memory emulator."""
        self.stop()
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- helpers ---------------------------------------------------------------------------------
    def _last_log_line(self) -> str:
        try:
            lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return "no log"
        return lines[-1] if lines else "no output"

    def __repr__(self) -> str:
        state = f"pid {self.process.pid}" if self.process and self.process.poll() is None else "not running"
        return f"<EmulatorProcess {self._chosen_address or 'no address yet'}, {state}>"
