"""How the demo runs and shows one step: a real `python -m service ...` subprocess, its output
indented under the command line, and what the devices logged meanwhile.

Checks use the same CLI with --json (not shown); a failed check raises StepFailed with one line.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from hubsettings import mask_secrets

from .processes import LINUX_DEATH_SIGNAL, ChildProcess, service_command

COMMAND_TIMEOUT = 90.0  # no service command of the demo should take more than a few seconds
DISPLAY_NAME = "iothub-service"  # what the user would type; the demo runs `python -m service`


class StepFailed(Exception):
    """A step of a story did not do what it should; the message says what, in one line."""


@dataclass
class CommandResult:
    args: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise StepFailed(f"`{display(self.args)}` printed no JSON: {self.stdout[:200]!r}") from None


def display(args: Iterable[str]) -> str:
    """The command line as a user would type it (single quotes inside double quotes read best)."""
    return " ".join([DISPLAY_NAME, *(_quote(a) for a in args)])


def _quote(arg: str) -> str:
    if "'" in arg and not any(c in arg for c in '"$`\\!'):
        return f'"{arg}"'
    return shlex.quote(arg)


class LogFollower:
    """Remembers how far each device log has been shown, and shows the lines added since."""

    def __init__(self, children: Iterable[ChildProcess]):
        self.children = list(children)
        self._shown: dict[str, int] = {}
        self.skip_all()

    def skip_all(self) -> None:
        for child in self.children:
            self._shown[child.name] = len(_lines(child.log_file))

    def new_lines(self, keep: Callable[[str], bool] = lambda line: True) -> list[tuple[str, str]]:
        out = []
        for child in self.children:
            lines = _lines(child.log_file)
            start = self._shown.get(child.name, 0)
            self._shown[child.name] = len(lines)
            out += [(child.name, line) for line in lines[start:] if keep(line)]
        return out


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


@dataclass
class Steps:
    """Runs service commands for the stories and prints them readably."""

    env: dict[str, str]
    cwd: Path
    devices: LogFollower
    echo: Callable[[str], None] = click.echo
    hub_line_shown: bool = False
    expected_hub: str = ""  # every command must say it uses this hub (the demo's emulator)

    # -- running ------------------------------------------------------------------------------------
    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT, merged: bool = False) -> CommandResult:
        """Run `python -m service ARGS`; merged: stderr goes into stdout, in the order written."""
        try:
            done = subprocess.run(service_command(*args), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT if merged else subprocess.PIPE, text=True,
                                  env=self.env, cwd=self.cwd, timeout=timeout, stdin=subprocess.DEVNULL,
                                  preexec_fn=LINUX_DEATH_SIGNAL)
        except subprocess.TimeoutExpired:
            raise StepFailed(f"`{display(args)}` did not finish within {timeout:g} s") from None
        result = CommandResult(tuple(args), done.returncode, done.stdout, done.stderr or "")
        self._check_hub(result, done.stdout if merged else result.stderr)
        return result

    def _check_hub(self, result: CommandResult, diagnostics: str) -> None:
        """Human-mode commands say first (on stderr) which hub they use: it must be ours, never a user's."""
        if "--json" in result.args or not self.expected_hub:
            return
        first = diagnostics.splitlines()[0] if diagnostics.strip() else ""
        if not first.startswith("Using IoT hub") or self.expected_hub not in first:
            raise StepFailed(f"`{display(result.args)}` did not use the demo's emulator: {first[:200]!r}")

    def show(self, *args: str, expect_exit: int = 0, timeout: float = COMMAND_TIMEOUT) -> CommandResult:
        """Run a command and print it with its output (stdout and stderr) indented below."""
        self.echo(click.style(f"$ {display(args)}", bold=True))
        result = self.run(*args, timeout=timeout, merged=True)
        for line in self._visible_lines(result):
            self.echo(f"    {line}")
        if result.exit_code != expect_exit:
            raise StepFailed(f"`{display(args)}` exited with {result.exit_code} (expected {expect_exit})")
        return result

    def _visible_lines(self, result: CommandResult) -> list[str]:
        lines = result.stdout.splitlines()
        if lines and lines[0].startswith("Using IoT hub"):
            if self.hub_line_shown:
                lines = lines[1:]  # said once is enough
            self.hub_line_shown = True
        return [mask_secrets(line.rstrip()) for line in lines]

    def json(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> Any:
        """Run a command with --json for a check (not shown); it must exit 0."""
        result = self.run(*args, "--json", timeout=timeout)
        if result.exit_code != 0:
            error = result.stderr.strip().splitlines()[-1:] or ["no error message"]
            raise StepFailed(f"`{display(result.args)}` exited with {result.exit_code}: {error[0]}")
        return result.json()

    def wait_until(self, check: Callable[[], Any], what: str, timeout: float,
                   interval: float = 0.25) -> Any:
        """Poll check() (e.g. a --json query) until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise StepFailed(f"{what}: not seen within {timeout:g} s")
            time.sleep(interval)

    # -- showing ------------------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        self.echo(text)

    def device_lines(self, keep: Callable[[str], bool] = lambda line: True) -> None:
        """Print what the devices logged since the last call (their side of the story)."""
        lines = self.devices.new_lines(keep)
        if lines:
            self.echo(click.style("  meanwhile, on the device side:", dim=True))
        for _name, line in lines:
            self.echo(f"    | {line}")

    def earlier_device_lines(self, name: str, keep: Callable[[str], bool]) -> None:
        """Print lines device `name` logged before the stories began (its start-up)."""
        for child in self.devices.children:
            if child.name == name:
                for line in child.output().splitlines():
                    if keep(line):
                        self.echo(f"    | {line}")

    def ok(self, text: str) -> None:
        self.echo(click.style(f"  ok: {text}", fg="green"))


def not_telemetry(line: str) -> bool:
    return " telemetry " not in line
