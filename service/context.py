"""Per-invocation state shared by all commands: global options, the hub client, output, clock.

Global options (--connection-string, --ca-file, --json) are accepted on the root group and on every
subcommand; a value given on the subcommand wins. Tests pass their own AppState (fake clock and sleep)
as the CliRunner's obj.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click
from hubsettings import ServiceSettings, SettingsError, mask_secrets, resolve_service_settings

from .errors import SettingsProblem
from .hub import HubClient
from .output import Output
from .waiting import Backoff, Poller


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class AppState:
    connection_string: str | None = None
    ca_file: str | None = None
    json_mode: bool = False
    tty: bool | None = None  # None: ask the terminal
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], dt.datetime] = _utc_now
    # Say on stderr which hub is used (human mode only). The CLI's own state turns it on; tests that
    # build their own AppState get exact output unless they ask for it.
    announce_hub: bool = False
    _hub: HubClient | None = field(default=None, repr=False)

    def settings(self) -> ServiceSettings:
        flags = {"IOTHUB_CONNECTION_STRING": self.connection_string, "IOTHUB_CA_FILE": self.ca_file}
        try:
            return resolve_service_settings(flags)
        except SettingsError as e:
            raise SettingsProblem(str(e)) from None

    def hub(self) -> HubClient:
        if self._hub is None:
            settings = self.settings()
            if self.announce_hub and not self.json_mode:
                click.echo(mask_secrets(settings.describe()), err=True)
            self._hub = HubClient(settings, sleep=self.sleep)
        return self._hub

    def output(self) -> Output:
        return Output(json_mode=self.json_mode, tty=self.tty)

    def poller(self, max_interval: float) -> Poller:
        return Poller(clock=self.clock, sleep=self.sleep,
                      backoff=Backoff(initial=min(0.25, max_interval), maximum=max_interval))


def app_state(ctx: click.Context | None = None) -> AppState:
    root = (ctx or click.get_current_context()).find_root()
    if root.obj is None:
        root.obj = AppState(announce_hub=True)
    return root.obj


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value not in (None, False):
        setattr(app_state(ctx), param.name, value)
    return value


def global_options(command: Callable) -> Callable:
    """--connection-string/--login, --ca-file and --json, for the root group and every command."""
    decorators = [
        click.option("--connection-string", "--login", "connection_string", metavar="CONNECTION_STRING",
                     expose_value=False, callback=_remember,
                     help="Service (policy) connection string. Default: $IOTHUB_CONNECTION_STRING, "
                          ".env, else the local emulator's."),
        click.option("--ca-file", "ca_file", metavar="PEM", expose_value=False, callback=_remember,
                     help="PEM of a private CA to trust (the local emulator's). Default: $IOTHUB_CA_FILE, "
                          "or found with the emulator."),
        click.option("--json", "json_mode", is_flag=True, expose_value=False, callback=_remember,
                     help="Print machine-readable JSON (the hub's own shapes) instead of text."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command
