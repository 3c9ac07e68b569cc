"""`iothub-device`: options -> hubsettings -> app. Every failure is one line and a documented exit code."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from collections.abc import Callable, Mapping
from typing import Any

import click

from hubsettings import DeviceSettings, SettingsError, mask_secrets, resolve_device_settings, with_registered_key

from .app import RunOptions
from .connecting import Backoff
from .errors import EXIT_CODES_HELP, EXIT_INTERRUPTED, EXIT_OK, EXIT_UNEXPECTED, DeviceError, SettingsProblem
from .eventlog import EventLog
from .fleet.launch import Pace, serve_fleet
from .fleet.runner import FleetOptions
from .fleet.sources import read_connection_strings
from .methods import MethodConfig
from .runner import install_stop_signals, run_devices
from .sdk import SdkClientFactory

Resolve = Callable[..., DeviceSettings]

#: Command-line option -> hubsettings setting name (hubsettings owns the precedence).
SETTING_OPTIONS = {
    "connection_string": "IOTHUB_DEVICE_CONNECTION_STRING",
    "device_id": "IOTHUB_DEVICE_ID",
    "provisioning_host": "PROVISIONING_HOST",
    "id_scope": "PROVISIONING_IDSCOPE",
    "registration_id": "PROVISIONING_REGISTRATION_ID",
    "symmetric_key": "PROVISIONING_SYMMETRIC_KEY",
    "group_key": "PROVISIONING_GROUP_KEY",
    "ca_file": "IOTHUB_CA_FILE",
}

EPILOG = (
    "Settings not given as options come from the environment, then .env, then the local emulator "
    "(see .env.example). With nothing set, the device connects to the local emulator as myDeviceId. "
    "Options that take keys are visible to other users in the process list: prefer the environment "
    "or .env for them.\n\n"
    "If the hub refuses a device's credentials after it has connected (the device was deleted, disabled "
    "or given new keys), the SDK never reconnects it: that device stops. A single device's listener then "
    "exits 4; with --count the other devices keep running, and the listener exits 4 once no device is "
    "left running (SIGTERM before that still exits 0, Ctrl-C 130; its last line names the devices "
    "that stopped).\n\n"
    "A fleet (--count or --connection-strings-file) runs on a lean MQTT engine in one process (up to "
    "10,000 devices): each device answers exactly as the one-device listener does. Devices start "
    "--concurrency at a time; one that fails does not stop the others: the fleet is ready once each "
    "has had its first try, names the ones that failed and keeps retrying them. A terminal shows a "
    "live progress line; the last line sums up what the fleet did.\n\n"
    + EXIT_CODES_HELP
)


def fleet_settings(flags: Mapping[str, str | None], count: int, prefix: str,
                   resolve: Resolve = resolve_device_settings) -> list[DeviceSettings]:
    """Settings for devices {prefix}001..{prefix}{count}, each provisioned under its own id.

    Works with the local emulator (any id goes through its DPS group enrollment) and with DPS group
    enrollment settings; a connection string or an individual DPS key names one device only.
    """
    width = max(3, len(str(count)))
    devices = []
    for number in range(1, count + 1):
        device_id = f"{prefix}{number:0{width}d}"
        settings = resolve({**flags, "IOTHUB_DEVICE_ID": device_id})
        if settings.device_id != device_id and settings.provisioning is not None:
            # An explicit PROVISIONING_REGISTRATION_ID names one device: use ours instead.
            settings = resolve({**flags, "IOTHUB_DEVICE_ID": device_id,
                                "PROVISIONING_REGISTRATION_ID": device_id})
        by_group_key = settings.provisioning is not None and settings.provisioning.from_group_key
        # The emulator may also list a connection string for the id (its discovery file).
        by_emulator = settings.connection_string is not None and settings.is_emulator
        ok = settings.device_id == device_id and (by_group_key or by_emulator)
        if not ok:
            raise SettingsProblem(
                f"--count needs settings that can name many devices: the local emulator, or DPS with a "
                f"group enrollment (PROVISIONING_IDSCOPE and PROVISIONING_GROUP_KEY); "
                f"these settings name one device ({settings.describe().removeprefix('Using ')})")
        devices.append(settings)
    return devices


def no_emulator_line(connect_timeout: float) -> str:
    """Said at once when nothing is configured and no local emulator has written its discovery file,
    rather than only after --connect-timeout of retries."""
    return ("No local emulator is running (no discovery file): start one with `iothub-emulator` in "
            "another terminal, or set IOTHUB_DEVICE_CONNECTION_STRING (or the PROVISIONING_* settings) to "
            f"use a real IoT hub. Trying for up to {connect_timeout:g} s.")


def configure_logging(verbose: bool) -> None:
    """--verbose shows the SDK's own logs on stderr; otherwise they stay quiet (the listener
    reports every connection change and background error itself)."""
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.basicConfig(level=logging.DEBUG, handlers=[handler])
        return
    for name in ("azure", "paho"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.CRITICAL + 1)
        logger.propagate = False


class _MaskingFormatter(logging.Formatter):
    """The SDK's debug logs may contain SAS tokens: mask them like everything else we print."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


def _positive(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise click.BadParameter("must be more than 0")
    return value


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"],
                                                 "max_content_width": 100})
@click.option("--connection-string", metavar="TEXT",
              help="Device connection string (HostName=..;DeviceId=..;SharedAccessKey=..). "
                   "Setting: IOTHUB_DEVICE_CONNECTION_STRING.")
@click.option("--device-id", metavar="ID",
              help="Device id on the local emulator when no connection string is set; myDeviceId is "
                   "pre-registered, any other id is provisioned through the emulator's DPS. "
                   "Setting: IOTHUB_DEVICE_ID.")
@click.option("--provisioning-host", metavar="HOST",
              help="DPS host (default global.azure-devices-provisioning.net). Setting: PROVISIONING_HOST.")
@click.option("--id-scope", metavar="SCOPE", help="DPS id scope. Setting: PROVISIONING_IDSCOPE.")
@click.option("--registration-id", metavar="ID",
              help="DPS registration id (default: the device id). Setting: PROVISIONING_REGISTRATION_ID.")
@click.option("--symmetric-key", metavar="KEY",
              help="DPS individual enrollment key (or IoT Central device key). "
                   "Setting: PROVISIONING_SYMMETRIC_KEY.")
@click.option("--group-key", metavar="KEY",
              help="DPS group enrollment key; the device key is derived from it. "
                   "Setting: PROVISIONING_GROUP_KEY.")
@click.option("--ca-file", metavar="PEM",
              help="CA certificate to trust (the local emulator's is found automatically); leave unset "
                   "for Azure. Setting: IOTHUB_CA_FILE.")
@click.option("--env-file", type=click.Path(exists=True, dir_okay=False), metavar="PATH",
              help="Read settings from this file instead of the .env found from the current directory.")
@click.option("--count", type=click.IntRange(1, 10000), metavar="N",
              help="Run N simulated devices in this one process, named PREFIX001..PREFIXN and provisioned "
                   "through DPS (the local emulator, or DPS group enrollment settings).")
@click.option("--device-id-prefix", default="sim-", show_default=True, metavar="PREFIX",
              help="Device id prefix for --count.")
@click.option("--connection-strings-file", type=click.Path(dir_okay=False, path_type=Path), metavar="PATH",
              help="Run one simulated device per line of this file of device connection strings (blank "
                   "lines and # comments skipped), e.g. devices created on an Azure IoT hub.")
@click.option("--concurrency", type=click.IntRange(1, 1000), default=100, show_default=True, metavar="N",
              help="Fleet: device starts (and reconnects) in flight at a time.")
@click.option("--connect-rate", type=float, callback=_positive, metavar="PER_SECOND",
              help="Fleet: new hub connections per second at most (default: no limit on the local "
                   "emulator, 100 on Azure).")
@click.option("--registration-rate", type=float, callback=_positive, metavar="PER_SECOND",
              help="Fleet: DPS registrations per second at most (default: no limit on the local emulator, "
                   "3 on Azure, about what one DPS unit accepts).")
@click.option("--device-events/--no-device-events", default=None,
              help="Fleet: one line per device event, as one device prints them (default: on up to 100 "
                   "devices; above that a progress line and the fleet's own lines only).")
@click.option("--reboot-delay", type=float, default=5.0, show_default=True, callback=_positive,
              metavar="SECONDS", help="How long a rebootDevice takes before rebootTime is reported "
                                      "(the tutorial used 20).")
@click.option("--diagnostics-delay", type=float, default=3.0, show_default=True, callback=_positive,
              metavar="SECONDS", help="How long the rundiagnostics command takes before its result is "
                                      "reported.")
@click.option("--telemetry/--no-telemetry", default=True, show_default=True,
              help="Send temperature/humidity telemetry (JSON, utf-8).")
@click.option("--telemetry-interval", type=float, default=10.0, show_default=True, callback=_positive,
              metavar="SECONDS", help="Seconds between telemetry messages.")
@click.option("--connect-timeout", type=float, default=60.0, show_default=True, callback=_positive,
              metavar="SECONDS", help="Give up the first connection (and provisioning) after this long, "
                                      "retrying with exponential backoff until then (exit code 5).")
@click.option("-v", "--verbose", is_flag=True, help="Also show the SDK's own logs (on stderr).")
@click.option("--json-logs", is_flag=True, help="Print events as JSON lines instead of text.")
@click.pass_context
def cli(ctx: click.Context, count: int | None, device_id_prefix: str, connection_strings_file: Path | None,
        concurrency: int, connect_rate: float | None, registration_rate: float | None,
        device_events: bool | None, reboot_delay: float,
        diagnostics_delay: float, telemetry: bool, telemetry_interval: float, connect_timeout: float,
        verbose: bool, json_logs: bool, env_file: str | None, **setting_options: str | None) -> None:
    """Run a simulated IoT device until Ctrl-C or SIGTERM.

    It answers the direct methods rebootDevice and lockDoor and the IoT Central commands blink,
    turnon, turnoff and rundiagnostics; applies and acknowledges desired properties (name,
    brightness, and any other such as building or floor); reports its reboot and door state; and
    sends telemetry. One line per event: time, device id, event.
    """
    deps: dict[str, Any] = ctx.obj or {}
    if count is not None and setting_options.get("device_id"):
        raise click.UsageError("--device-id and --count exclude each other (use --device-id-prefix)")
    if connection_strings_file is not None:
        clash = [f"--{name.replace('_', '-')}" for name, value in setting_options.items()
                 if value and name != "ca_file"] + (["--count"] if count is not None else [])
        if clash:
            raise click.UsageError(f"--connection-strings-file names the devices: leave out {', '.join(clash)}")
    fleet_mode = count is not None or connection_strings_file is not None
    configure_logging(verbose)
    log: EventLog = deps.get("log") or EventLog(json_lines=json_logs)
    flags = {SETTING_OPTIONS[name]: value for name, value in setting_options.items()}
    resolve: Resolve = deps.get("resolve") or resolve_device_settings

    def resolve_with_env_file(f: Mapping[str, str | None]) -> DeviceSettings:
        return resolve(f, dotenv_path=env_file) if env_file else resolve(f)

    options = RunOptions(
        methods=MethodConfig(reboot_delay=reboot_delay, diagnostics_delay=diagnostics_delay),
        telemetry=telemetry, telemetry_interval=telemetry_interval,
        backoff=Backoff(timeout=connect_timeout, jitter=0.5 if fleet_mode else 0.0))
    try:
        if connection_strings_file is not None:
            devices = read_connection_strings(connection_strings_file,
                                              lambda line: resolve_with_env_file({**flags, **line}))
        elif count is None:
            devices = [with_registered_key(resolve_with_env_file(flags))]
        else:
            devices = fleet_settings(flags, count, device_id_prefix, resolve_with_env_file)
        log.info(devices[0].describe() + (f" (and {len(devices) - 1} more devices: "
                                          f"{devices[1].device_id}..{devices[-1].device_id})"
                                          if len(devices) > 1 else ""))
        if devices[0].is_emulator and not devices[0].emulator_running:
            log.info(no_emulator_line(connect_timeout))
        if fleet_mode:
            fleet = FleetOptions(concurrency=concurrency,
                                 device_events=len(devices) <= 100 if device_events is None else device_events)
            pace = Pace(concurrency, connect_rate, registration_rate)
            code = asyncio.run(_serve_fleet(devices, options, fleet, pace, deps, log, json_logs))
        else:
            code = asyncio.run(_serve(devices, options, deps, log))
    except (SettingsError, DeviceError) as e:
        click.echo(mask_secrets(f"Error: {e}"), err=True)
        ctx.exit(getattr(e, "exit_code", SettingsProblem.exit_code))
    except KeyboardInterrupt:  # Ctrl-C before the loop's own handler was installed
        code = EXIT_INTERRUPTED if fleet_mode else EXIT_OK
    except Exception as e:  # noqa: BLE001 - the last line of defence against a traceback
        click.echo(mask_secrets(f"Error: unexpected {type(e).__name__}: {e} (please report this; "
                                "--verbose shows the SDK's logs)"), err=True)
        ctx.exit(EXIT_UNEXPECTED)
    ctx.exit(code)


async def _serve(devices: list[DeviceSettings], options: RunOptions, deps: Mapping[str, Any],
                 log: EventLog) -> int:
    stop: asyncio.Event = deps.get("stop") or asyncio.Event()
    asyncio.get_running_loop().set_exception_handler(_quiet_exception_handler)
    remove_signals = install_stop_signals(stop)
    try:
        factory = deps.get("factory") or SdkClientFactory()
        return await run_devices(devices, options, factory, log, stop,
                                 **{k: deps[k] for k in ("sleep", "clock", "now", "started") if k in deps})
    finally:
        remove_signals()


async def _serve_fleet(devices: list[DeviceSettings], options: RunOptions, fleet: FleetOptions, pace: Pace,
                       deps: Mapping[str, Any], log: EventLog, json_lines: bool) -> int:
    asyncio.get_running_loop().set_exception_handler(_quiet_exception_handler)
    return await serve_fleet(devices, options, fleet, pace, deps, log, json_lines)


def _quiet_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The SDK completes futures of operations we stopped waiting for (a connect attempt cut short
    by Ctrl-C or by another device's failure); their errors belong in --verbose, not on screen."""
    logging.getLogger("device.asyncio").debug("%s", context.get("message"),
                                              exc_info=context.get("exception"))


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`iothub-device`, `python -m device`)."""
    cli.main(args=argv, prog_name="iothub-device")
