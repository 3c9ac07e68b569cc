"""The processes a benchmark starts: spawn with a JSON-lines channel, wait for an event, always stop.

Children run in their own session so a Ctrl-C in the terminal reaches only the bench, which then
stops them in order (SIGTERM, then SIGKILL) from its `finally` blocks.
"""

from __future__ import annotations

import json
import os
import queue
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from emulator import loopback

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class ChildFailed(RuntimeError):
    """A child exited early, said something unexpected, or did not answer in time."""


class Child:
    """A subprocess that prints JSON lines on stdout and reads commands on stdin."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path, *, env: dict[str, str] | None = None,
                 reads_stdin: bool = True):
        self.name = name
        self.reads_stdin = reads_stdin  # our children stop when stdin closes; others (mosquitto) need SIGTERM
        self.log_path = log_dir / f"{name}.log"
        child_env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
        child_env.update(env or {})
        child_env["PYTHONUNBUFFERED"] = "1"
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(list(argv), cwd=PROJECT_ROOT, env=child_env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self._log, start_new_session=True)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._lines.put(raw.decode("utf-8", "replace").strip())
        self._lines.put(None)

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """The next JSON line whose "event" is `event` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChildFailed(f"{self.name}: no '{event}' within {timeout:.0f} s (log: {self.log_path})")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise ChildFailed(f"{self.name} exited with {self.process.wait()} before '{event}' "
                                  f"(log: {self.log_path}): {self.log_tail()}")
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("event") == event:
                return message

    def send(self, line: str) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            try:
                self.process.stdin.write((line + "\n").encode())
                self.process.stdin.flush()
            except (BrokenPipeError, OSError):
                pass

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """Close stdin (the polite stop for our own children), then SIGTERM, then SIGKILL. Even when
        interrupted half-way (a second Ctrl-C), the child is killed before this returns or raises."""
        try:
            steps: list[signal.Signals | None] = [signal.SIGTERM, signal.SIGKILL]
            if self.reads_stdin:
                steps.insert(0, None)
            if self.process.stdin is not None:
                try:
                    self.process.stdin.close()
                except OSError:
                    pass
            for sig in steps:
                if self.process.poll() is not None:
                    break
                if sig is not None:
                    self.process.send_signal(sig)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    continue
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._log.close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def free_loopback_address(ports: Iterable[int], exclude: Iterable[str] = ()) -> str:
    """A 127.0.0.X where every port in `ports` is free: each server gets its own address."""
    try:
        return loopback.free_loopback_address(tuple(ports), exclude=exclude, tries=60,
                                              fall_back_to_127_0_0_1=True)
    except loopback.NoFreeLoopbackAddress as e:
        raise ChildFailed(str(e)) from None


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process (Linux /proc; elsewhere `ps`); None when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
        return int(out.stdout.strip()) * 1024 if out.stdout.strip() else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used (Linux /proc); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-files limit towards `wanted` (children inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft
