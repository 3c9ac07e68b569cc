"""The demo itself (`make demo` runs `python -m demo`): every story passes, it reads as
promised, and it leaves no process or temporary directory behind, also when interrupted."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo.processes import HUB_SETTINGS
from tests.e2e.conftest import PROJECT_ROOT
from tests.e2e.support import wait_for

pytestmark = pytest.mark.e2e

DEMO_TIMEOUT = 180  # it takes well under a minute; this only bounds a hang on a loaded machine


def demo_env() -> dict[str, str]:
    """A user's environment minus hub settings (the demo must not need any)."""
    env = {k: v for k, v in os.environ.items() if k not in HUB_SETTINGS}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def work_dir_of(output: str) -> Path:
    match = re.search(r"\(logs in (\S+)\)", output)
    assert match, output[:500]
    return Path(match.group(1))


def processes_using(path: Path) -> list[str]:
    """Live processes whose command line or environment mention path: every child of the demo has
    its work dir in one or the other (data dir, discovery file)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (proc / "environ").read_bytes().decode(errors="replace")
            state = (proc / "stat").read_text().split(") ", 1)[1][:1]
        except (OSError, IndexError):
            continue
        if state != "Z" and (str(path) in cmdline or str(path) in environ):
            found.append(f"{proc.name}: {cmdline}")
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="checks for leftover processes through /proc")
def test_demo_passes_every_story_and_stops_everything(tmp_path):
    result = subprocess.run([sys.executable, "-m", "demo"], capture_output=True, text=True,
                            env=demo_env(), cwd=tmp_path, timeout=DEMO_TIMEOUT, stdin=subprocess.DEVNULL)
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    work_dir = work_dir_of(out)
    for expected in (
        "$ iothub-emulator --address 127.0.0.",
        "myDeviceId ready: Using IoT hub 127.0.0.",
        "fleet ready: Using DPS",
        "sensor-01 ready: Using DPS",
        "== Story 1/3: reboot ==",
        "Method rebootDevice on myDeviceId: status 200",
        "Last reboot time: ",
        "| ",  # the device side of a story
        "== Story 2/3: jobs ==",
        "job demo-lockdoor: completed 3 succeeded, 0 failed, 0 running, 0 pending of 3",
        "job demo-building: completed 3 succeeded, 0 failed, 0 running, 0 pending of 3",
        "== Story 3/3: IoT Central sensor ==",
        "$ iothub-service monitor sensor-01 --start earliest --count 2",
        "telemetry messages read",
        "provisioned: assigned to 127.0.0.",
        "Method rundiagnostics on sensor-01: status 202",
        "rundiagnostics.value = Diagnostics run complete at",
        "Demo passed: 3 stories in",
    ):
        assert expected in out, f"missing {expected!r} in:\n{out[-3000:]}"
    assert out.count("Using IoT hub 127.0.0.") == 2  # the device's line, and the service's once
    assert out.count("  ok: ") == 3 and "FAILED" not in out
    assert not work_dir.exists()
    assert processes_using(work_dir) == []


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="checks for leftover processes through /proc")
def _signal_state(pid: int) -> str:
    """The kernel's view of a process's signals (Linux), for a failure message."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return "signal state: unavailable"
    return "signal state: " + ", ".join(line.replace("\t", " ") for line in lines
                                        if line.startswith(("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")))


def test_ctrl_c_stops_every_child_and_exits_130(tmp_path):
    log = tmp_path / "demo.out"
    with open(log, "w") as out:
        demo = subprocess.Popen([sys.executable, "-m", "demo"], stdout=out, stderr=subprocess.STDOUT,
                                env=demo_env(), cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: "== Story 1/3" in log.read_text() or demo.poll() is not None, timeout=120,
                 what="the first story")
        assert demo.poll() is None, log.read_text()
        work_dir = work_dir_of(log.read_text())
        assert processes_using(work_dir)  # the emulator and the device listeners are running
        demo.send_signal(signal.SIGINT)
        signal_state = _signal_state(demo.pid)  # should the signal be lost: blocked, ignored or pending?
        assert demo.wait(60) == 130, f"{signal_state}\n{log.read_text()}"
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    text = log.read_text()
    assert "Interrupted: stopping everything" in text and "everything stopped" in text
    assert "Traceback" not in text
    deadline = time.monotonic() + 5  # the children were waited for; this only absorbs /proc lag
    while processes_using(work_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_using(work_dir) == []
    assert not work_dir.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="children die with the demo on Linux only")
def test_a_killed_demo_leaves_no_process_behind(tmp_path):
    """SIGKILL gives the demo no chance to clean up: its children must go by themselves."""
    log = tmp_path / "demo.out"
    with open(log, "w") as out:
        demo = subprocess.Popen([sys.executable, "-m", "demo"], stdout=out, stderr=subprocess.STDOUT,
                                env=demo_env(), cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: "== Story 1/3" in log.read_text() or demo.poll() is not None, timeout=120,
                 what="the first story")
        work_dir = work_dir_of(log.read_text())
        assert processes_using(work_dir)
        demo.kill()
        demo.wait(30)
        wait_for(lambda: not processes_using(work_dir), timeout=60, interval=0.1,
                 what=f"the demo's children to stop: {processes_using(work_dir)}")
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    shutil.rmtree(work_dir, ignore_errors=True)  # left behind: nobody could remove it
