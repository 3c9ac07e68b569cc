"""monitor: device telemetry as it reaches the hub, read from its built-in Event Hubs-compatible endpoint."""

from __future__ import annotations

import base64
import json

import click

from ..context import app_state, global_options
from ..errors import BadInput
from ..event_hub import EventHubEndpoint, Monitor, Telemetry, check_consumer_group, discover, starting_position


def _body(telemetry: Telemetry) -> object:
    """The body as text (JSON parsed when it is JSON), or {"base64": ...} when it is not UTF-8."""
    try:
        text = telemetry.body.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(telemetry.body).decode("ascii")}
    try:
        return json.loads(text)
    except ValueError:
        return text


def as_json(telemetry: Telemetry, with_properties: bool) -> dict:
    record: dict = {"deviceId": telemetry.device_id,
                    "enqueuedTime": telemetry.enqueued_time.isoformat() if telemetry.enqueued_time else None,
                    "partition": telemetry.partition, "sequenceNumber": telemetry.sequence_number,
                    "body": _body(telemetry)}
    if with_properties:
        record["properties"] = telemetry.properties
        record["systemProperties"] = {k: v for k, v in telemetry.system_properties.items()
                                      if isinstance(v, (str, int, float, bool)) or v is None}
    return record


def as_line(telemetry: Telemetry, with_properties: bool) -> str:
    when = telemetry.enqueued_time.isoformat(timespec="milliseconds") if telemetry.enqueued_time else "-"
    body = _body(telemetry)
    shown = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    line = f"{when} {telemetry.device_id} {shown}"
    if with_properties:
        system = {k: telemetry.system_properties[k] for k in ("message-id", "correlation-id", "content-type",
                                                              "content-encoding") if k in telemetry.system_properties}
        line += f"  properties={json.dumps(telemetry.properties)} system={json.dumps(system, default=str)}"
    return line


@click.command("monitor")
@click.argument("device_id", metavar="[DEVICE]", required=False)
@click.option("--properties", "with_properties", is_flag=True,
              help="Show the application properties and the message id, correlation id, content type and encoding.")
@click.option("--consumer-group", "-g", default="$Default", show_default=True,
              help="The consumer group to read with (one that exists on the hub's built-in endpoint).")
@click.option("--start", default="latest", show_default=True, metavar="earliest|latest|TIME",
              help="Where to start: the oldest retained message, only new ones, or those enqueued at or "
                   "after an ISO 8601 TIME (e.g. 2024-05-01T12:00:00Z).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Stop after this many seconds. Default: run until Ctrl-C (or --count).")
@click.option("--count", type=click.IntRange(min=1), default=None, metavar="N",
              help="Stop after N messages (exit code 14 if --timeout passes first).")
@click.option("--event-hub-connection-string", default=None, envvar="IOTHUB_EVENT_HUB_CONNECTION_STRING",
              help="The hub's Event Hubs-compatible connection string (Endpoint=sb://...;EntityPath=...). "
                   "Default: found from the hub's connection string, as the az extension does.")
@global_options
def monitor(device_id: str | None, with_properties: bool, consumer_group: str, start: str, timeout: float | None,
            count: int | None, event_hub_connection_string: str | None) -> None:
    """Print device-to-cloud messages (telemetry) as the hub receives them: one line per message
    (time, device, body), JSON lines with --json. Only DEVICE's when given.

    Reads the hub's built-in Event Hubs-compatible endpoint, on Azure and on the local emulator alike.
    """
    start = start.strip().lower() if start.strip().lower() in ("earliest", "latest") else start.strip()
    starting_position(start)  # a bad --start fails before any connection
    state = app_state()
    state.hub()  # says on stderr which hub is used (human mode), as every command does
    settings, out = state.settings(), state.output()
    if event_hub_connection_string:
        endpoint = EventHubEndpoint.parse(event_hub_connection_string)
    else:
        endpoint = discover(settings)
    if not consumer_group.strip():
        raise BadInput("--consumer-group must not be empty")
    ca_file = str(settings.ca_file) if settings.ca_file and settings.ca_file.is_file() else None
    check_consumer_group(endpoint, consumer_group, ca_file)

    def show(telemetry: Telemetry) -> bool:
        if device_id is not None and telemetry.device_id != device_id:
            return False
        if out.json_mode:
            click.echo(json.dumps(as_json(telemetry, with_properties), separators=(",", ":"), default=str))
        else:
            click.echo(as_line(telemetry, with_properties))
        return True

    if not out.json_mode:
        who = f"device {device_id}" if device_id else "all devices"
        out.note(f"Monitoring telemetry from {who} on event hub {endpoint.entity_path} (consumer group "
                 f"{consumer_group}, from {start}); Ctrl-C to stop")
    Monitor(endpoint, ca_file=ca_file, consumer_group=consumer_group).run(show, start=start, timeout=timeout,
                                                                         count=count)
