"""device create / show / list / delete / connection-string: set up a device without another tool."""

from __future__ import annotations

import base64
import secrets

import click
from hubsettings import mask_key

from ..context import app_state, global_options
from ..errors import ServiceError
from ..output import dumps, mask_device, show_device, show_devices


def new_device_key() -> str:
    """A fresh 256-bit key, as the Azure portal generates them."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


@click.group()
@global_options
def device() -> None:
    """Create, inspect and delete device identities (keys are always masked)."""


@device.command("create")
@click.argument("device_id", metavar="ID")
@click.option("--status", type=click.Choice(["enabled", "disabled"]), default="enabled", show_default=True,
              help="Whether the device may connect.")
@global_options
def create(device_id: str, status: str) -> None:
    """Register device ID with fresh symmetric keys (print its connection string with
    `device connection-string ID --show-key`)."""
    state = app_state()
    data = state.hub().create_device(device_id, new_device_key(), new_device_key(), status)
    out = state.output()
    if out.json_mode:
        out.json(mask_device(data))
        return
    out.line(f"Created device {device_id} ({data.get('status')}).")
    out.line(f"Its connection string: iothub-service device connection-string {device_id} --show-key")


@device.command("show")
@click.argument("device_id", metavar="ID")
@global_options
def show(device_id: str) -> None:
    """Print device ID's identity: status, connection state, authentication (keys masked)."""
    state = app_state()
    data = mask_device(state.hub().get_device(device_id))
    out = state.output()
    out.json(data) if out.json_mode else show_device(out, data)


@device.command("list")
@click.option("--top", type=click.IntRange(1, 1000), help="At most N devices (the hub caps a page at 1000).")
@global_options
def list_command(top: int | None) -> None:
    """List device identities (for large hubs use `query "SELECT * FROM devices"`)."""
    state = app_state()
    data = [mask_device(d) for d in state.hub().list_devices(top)]
    out = state.output()
    out.json(data) if out.json_mode else show_devices(out, data)


@device.command("delete")
@click.argument("device_id", metavar="ID")
@click.option("--etag", help="Delete only if the identity still has this etag. Default: unconditionally.")
@global_options
def delete(device_id: str, etag: str | None) -> None:
    """Delete device ID from the hub's identity registry."""
    state = app_state()
    state.hub().delete_device(device_id, etag)
    out = state.output()
    if out.json_mode:
        out.json({"deviceId": device_id, "deleted": True})
    else:
        out.line(f"Deleted device {device_id}.")


@device.command("connection-string")
@click.argument("device_id", metavar="ID")
@click.option("--key", "which", type=click.Choice(["primary", "secondary"]), default="primary",
              show_default=True, help="Which of the device's keys to use.")
@click.option("--show-key", is_flag=True,
              help="Print the key in full (masked without it); treat the full string as a password.")
@global_options
def connection_string(device_id: str, which: str, show_key: bool) -> None:
    """Print device ID's connection string (HostName without a port: devices use MQTT on 8883).

    The key is masked unless --show-key is given.
    """
    state = app_state()
    settings = state.settings()
    data = state.hub().get_device(device_id)
    keys = ((data.get("authentication") or {}).get("symmetricKey") or {})
    key = keys.get(f"{which}Key")
    if not key:
        raise ServiceError(f"device '{device_id}' has no {which} symmetric key (authentication type "
                           f"{(data.get('authentication') or {}).get('type')})")
    shown = key if show_key else mask_key(key)
    text = f"HostName={settings.connection_string.host};DeviceId={device_id};SharedAccessKey={shown}"
    out = state.output()
    if out.json_mode:
        text = dumps({"deviceId": device_id, "connectionString": text})
    # Not through out.line/out.json: they mask keys, and --show-key is the explicit request for one.
    click.echo(text)
