"""`iothub-emulator` / `python -m emulator`: run the local IoT Hub emulator until Ctrl-C or SIGTERM;
`iothub-emulator dps compute-device-key`: a device key of the emulator's DPS group enrollment.

Exit codes: 0 clean stop; 1 cannot start (data directory, certificates, another emulator's discovery
file); 2 bad options;
3 the address/port is already taken (or not a local address).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import click

from hubsettings import (SasError, derive_device_key, emulator_environment, is_loopback_host, mask_key,
                         mask_secrets, wellknown)
from hubsettings.discovery import default_data_dir, default_discovery_file, read_discovery

from .amqp.server import DEFAULT_PORT as AMQP_PORT
from .certs import CertificateError
from .hub.telemetry import MAX_CONSUMER_GROUPS, consumer_group_name_problem
from .mqtt.server import AddressInUse
from .rest.throttle import TIERS
from .server import EmulatorConfig, EmulatorServer, default_host_name
from .store import StoreError

EXIT_START_FAILED = 1
EXIT_ADDRESS_IN_USE = 3


class StartError(click.ClickException):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def _check_consumer_groups(ctx: click.Context, param: click.Parameter, names: tuple[str, ...]) -> tuple[str, ...]:
    for name in names:
        if (problem := consumer_group_name_problem(name)) is not None:
            raise click.BadParameter(problem)
    if len(set(n.lower() for n in names) | {"$default"}) > MAX_CONSUMER_GROUPS:
        raise click.BadParameter(f"a hub has at most {MAX_CONSUMER_GROUPS} consumer groups, $Default included")
    return names


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--address", default=wellknown.BIND_ADDRESS, show_default=True,
              help="Local address to listen on. Use another loopback address (127.0.0.2, ...) to run "
                   "several emulators side by side.")
@click.option("--host-name", default=None,
              help="The hub host name devices use (HostName=...). Default: localhost, or the address "
                   "itself when it is not 127.0.0.1/::1.")
@click.option("--mqtt-port", type=click.IntRange(0, 65535), default=wellknown.MQTT_PORT, show_default=True,
              help="MQTT/TLS port for devices and DPS (the device SDK only ever uses 8883).")
@click.option("--rest-port", type=click.IntRange(0, 65535), default=None,
              help=f"HTTPS port for services (REST) and for devices using MQTT over WebSockets. Default: "
                   f"{wellknown.REST_PORT} as on IoT Hub (connection strings then carry no port), or "
                   f"{wellknown.REST_FALLBACK_PORT} when this user may not bind {wellknown.REST_PORT}. A port "
                   "given here is used or the emulator does not start.")
@click.option("--amqp-port", type=click.IntRange(0, 65535), default=AMQP_PORT, show_default=True,
              help="AMQP/TLS port for services: cloud-to-device messages and their feedback (the SDKs "
                   "always dial 5671).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the registry, twins and certificates are kept. Default: the emulator home "
                   "($IOTHUB_EMULATOR_HOME, else ~/.iothub-emulator) on 127.0.0.1; <home>/hubs/<address> on "
                   "any other address, so emulators side by side never share one.")
@click.option("--in-memory", is_flag=True, help="Keep nothing on disk (state is lost at exit).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              default="info", show_default=True)
@click.option("--show-keys", is_flag=True, help="Print the development keys in full (masked otherwise).")
@click.option("--discovery-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the discovery file the device and service programs read. Default: "
                   "$IOTHUB_EMULATOR_DISCOVERY, else discovery.json in the default data directory.")
@click.option("--no-discovery", is_flag=True, help="Do not write a discovery file.")
@click.option("--throttle", type=click.Choice(list(TIERS), case_sensitive=False), default=None,
              help="Throttle the service API as an IoT hub of this tier (one unit) does: past the limit, "
                   "429 ThrottlingException with Retry-After. Off by default.")
@click.option("--consumer-group", "consumer_groups", multiple=True, callback=_check_consumer_groups,
              metavar="NAME", help="Create this consumer group on the Event Hubs-compatible endpoint beside "
                                   "$Default (repeatable; IoT Hub allows 20).")
@click.pass_context
def main(ctx: click.Context, address: str, host_name: str | None, mqtt_port: int, rest_port: int | None,
         amqp_port: int, data_dir: Path | None, in_memory: bool, log_level: str, show_keys: bool,
         discovery_file: Path | None, no_discovery: bool, throttle: str | None,
         consumer_groups: tuple[str, ...]) -> None:
    """Run a local Azure IoT Hub emulator (devices over MQTT/TLS and DPS, services over HTTPS REST) with
    well-known development keys."""
    if ctx.invoked_subcommand is not None:
        return
    if in_memory and data_dir:
        raise click.UsageError("--in-memory and --data-dir exclude each other")
    # IOTHUB_EMULATOR_HOME and IOTHUB_EMULATOR_DISCOVERY: flag > environment > .env, as for the other programs.
    env = emulator_environment()
    if not in_memory and data_dir is None:
        data_dir = default_data_dir(address, env)
    if not no_discovery and discovery_file is None:
        discovery_file = default_discovery_file(address, env)
    if not no_discovery:
        _refuse_foreign_discovery_file(discovery_file)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        stream=sys.stderr)
    config = EmulatorConfig(address=address, host_name=host_name or default_host_name(address),
                            mqtt_port=mqtt_port, rest_port=wellknown.REST_PORT if rest_port is None else rest_port,
                            rest_fallback_port=wellknown.REST_FALLBACK_PORT if rest_port is None else None,
                            amqp_port=amqp_port, data_dir=data_dir, in_memory=in_memory,
                            discovery_file=discovery_file, write_discovery=not no_discovery,
                            throttle=throttle.upper() if throttle else None, consumer_groups=consumer_groups)
    try:
        asyncio.run(_serve(EmulatorServer(config), show_keys))
    except KeyboardInterrupt:  # where signal handlers are unavailable (Windows), Ctrl-C lands here
        pass


def _refuse_foreign_discovery_file(path: Path) -> None:
    """Another running emulator's discovery file is never overwritten: its clients would silently switch."""
    owner = read_discovery(path)
    if owner is not None and owner.pid not in (None, os.getpid()):
        raise StartError(f"{path} is the discovery file of the emulator running on {owner.mqtt_address} "
                         f"(pid {owner.pid}): give this one its own --discovery-file, or leave "
                         "IOTHUB_EMULATOR_DISCOVERY unset so each address gets its own", EXIT_START_FAILED)


async def _serve(server: EmulatorServer, show_keys: bool) -> None:
    # Handlers before start: the discovery file written during start tells others it is ready, and a
    # SIGTERM sent right then must still stop it cleanly.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):
            pass  # Windows: Ctrl-C raises KeyboardInterrupt instead; the server still stops in finally
    try:
        await server.start()
    except AddressInUse as e:
        raise StartError(e.strerror or str(e), EXIT_ADDRESS_IN_USE) from None
    except (StoreError, CertificateError) as e:
        raise StartError(str(e), EXIT_START_FAILED) from None
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        raise StartError(f"cannot start: {e.strerror or e}{where}", EXIT_START_FAILED) from None
    try:
        click.echo(describe(server, show_keys))
        await stop.wait()
        click.echo("Stopping...", err=True)
    finally:
        await server.stop()


def describe(server: EmulatorServer, show_keys: bool) -> str:
    """What a user needs to connect: where it listens, the CA and the connection strings."""
    info = server.info()
    show = (lambda text: text) if show_keys else mask_secrets
    config = server.config
    lines = [
        "IoT Hub emulator: DEVELOPMENT ONLY. Its keys are public; never expose it beyond this machine.",
        *([f"WARNING: {config.address} is not a loopback address: other machines can reach this emulator "
           "and its keys are public."] if not is_loopback_host(config.address) else []),
        f"  Devices (MQTT/TLS, DPS): {config.address}:{info.mqtt_port}   host name: {info.host_name}",
        f"  Services (HTTPS REST):   {config.address}:{info.rest_port}",
        *([f"  NOTE: {server.rest_port_note}"] if server.rest_port_note else []),
        *([f"  Services (AMQP/TLS):     {config.address}:{server.amqp_port}   (cloud-to-device messages; "
           "telemetry: Event Hubs-compatible endpoint)"]
          if server.amqp_port is not None else []),
        f"  CA certificate:          {info.ca_file}",
        f"  Data:                    {'in memory (lost at exit)' if config.in_memory else info.data_dir}",
        f"  Discovery file:          {server.discovery_file or 'not written'}",
        *([f"  Throttling:              IoT Hub {config.throttle} tier limits (429 with Retry-After)"]
          if config.throttle else []),
        "",
        "Connection strings" + ("" if show_keys else " (keys masked; --show-keys prints them)") + ":",
        f"  service (iothubowner):  {show(info.service_connection_string)}",
    ]
    if info.event_hub_connection_string:
        lines.append(f"  Event Hubs-compatible (telemetry): {show(info.event_hub_connection_string)}")
    for device_id, connection_string in info.device_connection_strings.items():
        lines.append(f"  device {device_id}:    {show(connection_string)}")
    group_key = info.provisioning_group_key if show_keys else mask_key(info.provisioning_group_key)
    lines += [
        f"  DPS: host {info.provisioning_host}, id scope {info.provisioning_id_scope}, group key {group_key}",
        "",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


@main.group()
def dps() -> None:
    """The emulator's Device Provisioning Service."""


@dps.command("compute-device-key")
@click.option("--registration-id", required=True, help="The device's registration id (its device id).")
@click.option("--group-key", default=wellknown.DPS_GROUP_KEY, show_default="the emulator's well-known group key",
              help="The symmetric-key group enrollment's primary key.")
def compute_device_key(registration_id: str, group_key: str) -> None:
    """Print the key a device of a symmetric-key group enrollment registers with: base64(HMAC-SHA256(group
    key, registration id)), as `az iot dps enrollment-group compute-device-key` prints it."""
    if not registration_id.strip():
        raise click.BadParameter("must not be empty", param_hint="--registration-id")
    try:
        key = derive_device_key(group_key, registration_id)
    except SasError:
        raise click.BadParameter("is not valid base64", param_hint="--group-key") from None
    click.echo(key)
