"""--help is complete at every level, lists the exit codes, and stays fast (no azure import)."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from service.cli import cli
from service.errors import ExitCode


def all_commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    yield path, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from all_commands(command, path + (name,))
        else:
            yield path + (name,), command


COMMANDS = list(all_commands())


def test_every_expected_command_exists():
    paths = {" ".join(path) for path, _ in COMMANDS}
    assert {"method invoke", "reboot", "twin show", "twin update", "twin wait", "query",
            "job schedule-method", "job schedule-twin-update", "job show", "job list", "job cancel",
            "job wait", "device create", "device show", "device list", "device delete",
            "device connection-string"} <= paths


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) or "root" for p, _ in COMMANDS])
def test_every_command_and_option_has_help(path, command):
    assert command.help and command.help.strip(), f"{' '.join(path)} has no help text"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help and param.help.strip(), f"{' '.join(path)} {param.opts[0]} has no help"
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


LEAVES = [path for path, command in COMMANDS if not isinstance(command, click.Group)]


@pytest.mark.parametrize("path", LEAVES, ids=[" ".join(p) for p in LEAVES])
def test_global_options_are_accepted_on_every_command(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    for option in ("--connection-string", "--login", "--ca-file", "--json"):
        assert option in result.output


def test_root_help_lists_every_exit_code():
    output = CliRunner().invoke(cli, ["--help"]).output
    assert "Exit codes:" in output
    for code in ExitCode:
        assert f"{int(code):>2}  " in output


def test_help_does_not_import_the_sdk():
    code = ("import sys; from service.cli import cli\n"
            "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('LOADED' if any(m.startswith(('azure.iot.hub', 'uamqp', 'rich')) for m in sys.modules) else 'CLEAN')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip().endswith("CLEAN")


def test_python_dash_m_service_works():
    result = subprocess.run([sys.executable, "-m", "service", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert "iothub-service" in result.stdout
