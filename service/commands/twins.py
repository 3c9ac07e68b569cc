"""twin show / update / wait."""

from __future__ import annotations

import json

import click

from ..context import app_state, global_options
from ..errors import BadInput, WaitTimeout
from ..inputs import parse_expected_value, parse_json_option, reported_value
from ..output import show_twin, without_metadata
from ..waiting import PollTimedOut, wait_for_reported


@click.group()
@global_options
def twin() -> None:
    """Read, update and watch device twins."""


@twin.command("show")
@click.argument("device_id", metavar="DEVICE")
@global_options
def show(device_id: str) -> None:
    """Print the twin of DEVICE: tags, desired and reported properties."""
    state = app_state()
    data = state.hub().get_twin(device_id)
    out = state.output()
    out.json(data) if out.json_mode else show_twin(out, data)


@twin.command("update")
@click.argument("device_id", metavar="DEVICE")
@click.option("--desired", metavar="JSON|@FILE",
              help='Desired properties patch, a JSON object; null deletes a key, e.g. \'{"fw": null}\'.')
@click.option("--tags", metavar="JSON|@FILE", help="Tags patch, a JSON object; null deletes a key.")
@click.option("--etag", help="Apply only if the twin still has this etag (exit code 8 otherwise). "
                             "Default: apply unconditionally.")
@global_options
def update(device_id: str, desired: str | None, tags: str | None, etag: str | None) -> None:
    """Patch the desired properties and/or tags of DEVICE's twin."""
    desired_patch = parse_json_option(desired, "--desired", want_object=True)
    tags_patch = parse_json_option(tags, "--tags", want_object=True)
    if desired_patch is None and tags_patch is None:
        raise BadInput("give --desired and/or --tags")
    state = app_state()
    data = state.hub().update_twin(device_id, desired_patch, tags_patch, etag)
    out = state.output()
    if out.json_mode:
        out.json(data)
        return
    props = data.get("properties") or {}
    out.line(f"Updated twin of {device_id} (etag {data.get('etag')}, desired $version "
             f"{(props.get('desired') or {}).get('$version')})")
    if tags_patch is not None:
        out.block("Tags", data.get("tags") or {})
    if desired_patch is not None:
        out.block("Desired properties", without_metadata(props.get("desired")))


@twin.command("wait")
@click.argument("device_id", metavar="DEVICE")
@click.option("--reported", "path", required=True, metavar="PATH",
              help="Reported property to watch; dots for nested ones, e.g. rebootState or fw.version.")
@click.option("--equals", metavar="VALUE",
              help="Wait until it equals VALUE (JSON like 5 or true, else plain text like running).")
@click.option("--changes", is_flag=True, help="Wait until it differs from its value when the wait starts.")
@click.option("--timeout", type=click.FloatRange(min=0), default=60, show_default=True,
              help="Seconds to wait before giving up (exit code 14).")
@click.option("--poll-interval", type=click.FloatRange(min=0.05), default=5, show_default=True,
              help="Longest pause in seconds between twin reads (starts at 0.25 s and backs off).")
@global_options
def wait(device_id: str, path: str, equals: str | None, changes: bool, timeout: float,
         poll_interval: float) -> None:
    """Wait until a reported property of DEVICE has a value, equals one, or changes.

    Without --equals or --changes, waits until the property is present (not null).
    """
    if equals is not None and changes:
        raise BadInput("give --equals or --changes, not both")
    state = app_state()
    hub, out = state.hub(), state.output()
    before = reported_value(hub.get_twin(device_id), path) if changes else None
    if equals is not None:
        expected = parse_expected_value(equals)
        done = lambda value: value == expected or (isinstance(value, str) and value == equals)  # noqa: E731
        goal = f"equal {equals}"
    elif changes:
        done = lambda value: value != before  # noqa: E731
        goal = f"change from {_shown(before)}"
    else:
        done = lambda value: value is not None  # noqa: E731
        goal = "appear"
    with out.spinner(f"Waiting for {device_id} reported {path} to {goal} (up to {timeout:g} s)") as update:
        def on_poll(data: dict, elapsed: float) -> None:
            update(f"Waiting for {path} to {goal}: now {_shown(reported_value(data, path))}, {elapsed:.0f} s")
        try:
            data = wait_for_reported(hub, state.poller(poll_interval), device_id, path, done, timeout,
                                     on_poll)
        except PollTimedOut as e:
            raise WaitTimeout(f"reported {path} of device '{device_id}' did not {goal} within {timeout:g} s "
                              f"(last value: {_shown(reported_value(e.last, path))})") from None
    value = reported_value(data, path)
    if out.json_mode:
        out.json({"deviceId": device_id, "path": path, "value": value, "previous": before})
    else:
        out.line(f"{path} = {value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}")


def _shown(value: object) -> str:
    """A reported value as the twin's JSON shows it (true, 5, "running"); 'not reported' when absent."""
    return "not reported" if value is None else json.dumps(value, ensure_ascii=False)
