"""iothub-service: the operator's side of IoT Hub device management, as one click CLI.

Thin on purpose: the groups live in service/commands/, the hub calls in hub.py, rendering in output.py.
"""

from __future__ import annotations

import click

from .commands.devices import device
from .commands.jobs import job
from .commands.messages import message
from .commands.methods import method, reboot
from .commands.monitor import monitor
from .commands.queries import query
from .commands.twins import twin
from .context import global_options
from .errors import Interrupted, exit_codes_epilog


class _Cli(click.Group):
    """Ctrl-C ends any command with one line and exit code 130 (click's default: "Aborted!", exit 1,
    the code this CLI documents for an error answer from the hub)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted("interrupted") from None


@click.group(cls=_Cli, epilog=exit_codes_epilog(), context_settings={"help_option_names": ["-h", "--help"]})
@global_options
def cli() -> None:
    """Manage the devices of an IoT hub: direct methods, reboots, twins, queries, jobs, identities,
    cloud-to-device messages, and watch device telemetry (monitor).

    Works the same against Azure IoT Hub and the local emulator. The hub comes from
    --connection-string, else $IOTHUB_CONNECTION_STRING, else .env, else the local emulator
    (start it with `iothub-emulator`). Keys are always masked in output.
    """


for command in (method, reboot, twin, query, job, device, message, monitor):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="iothub-service")
