"""The real emulator program reads .env as the other programs do, and a second emulator on another
address gets its own data and discovery file without touching the first one's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulator.loopback import free_loopback_address

pytestmark = pytest.mark.e2e


def start(args: list[str], cwd: Path, home: Path) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTHUB_")}
    env["HOME"] = str(home)
    process = subprocess.Popen([sys.executable, "-m", "emulator", "--mqtt-port", "0", "--rest-port", "0",
                                "--amqp-port", "0", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Press Ctrl-C"):
            return process, "".join(lines)
    process.kill()
    pytest.fail("the emulator did not start:\n" + "".join(lines))


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)


def test_emulator_reads_dotenv_with_tilde_and_keeps_addresses_apart(tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    # .env.example's "defaults shown" line, uncommented, with ~ pointing somewhere else
    (work / ".env").write_text("IOTHUB_EMULATOR_HOME=~/lab-hub\n")
    first_address = free_loopback_address()
    second_address = free_loopback_address(exclude=[first_address])
    first, banner = start(["--address", first_address], work, home)
    try:
        assert f"Data:                    {home}/lab-hub/hubs/{first_address}\n" in banner
        first_file = home / "lab-hub" / "hubs" / first_address / "discovery.json"
        assert f"Discovery file:          {first_file}\n" in banner and first_file.is_file()
        before = first_file.read_text()
        second, banner2 = start(["--address", second_address], work, home)
        try:
            assert f"{home}/lab-hub/hubs/{second_address}/discovery.json" in banner2
            assert first_file.read_text() == before  # the first emulator's file is untouched
        finally:
            stop(second)
        assert first_file.read_text() == before  # ... and still there after the second stopped
    finally:
        stop(first)
    assert not first_file.exists()
