"""method invoke, and reboot (invoke rebootDevice, then wait for a new reported rebootTime)."""

from __future__ import annotations

import click

from hubsettings import limits

from ..context import app_state, global_options
from ..errors import MethodFailed, WaitTimeout
from ..inputs import check_method_payload, parse_json_option, reported_value
from ..output import show_method_result
from ..waiting import PollTimedOut, wait_for_reported_change

_RESPONSE_RANGE = limits.METHOD_RESPONSE_TIMEOUT_RANGE
_CONNECT_RANGE = limits.METHOD_CONNECT_TIMEOUT_RANGE


def response_timeout_option(device: str = "the device"):
    """--response-timeout within IoT Hub's range; `device` names who answers in the help text."""
    low, high = _RESPONSE_RANGE
    return click.option("--response-timeout", type=click.IntRange(low, high),
                        default=limits.METHOD_RESPONSE_TIMEOUT_DEFAULT, show_default=True,
                        help=f"Seconds the hub waits for {device}'s answer ({low}..{high}).")


def connect_timeout_option(device: str = "the device"):
    """--connect-timeout within IoT Hub's range (0: the device must be online at once)."""
    low, high = _CONNECT_RANGE
    return click.option("--connect-timeout", type=click.IntRange(low, high),
                        default=limits.METHOD_CONNECT_TIMEOUT_DEFAULT, show_default=True,
                        help=f"Seconds the hub waits for {device} to connect ({low}..{high}; "
                             "0: it must be online now).")


def _succeeded(result: dict) -> bool:
    status = result.get("status")
    return isinstance(status, int) and 200 <= status < 300


def _require_success(device_id: str, method_name: str, result: dict) -> None:
    if not _succeeded(result):
        status = result.get("status")
        raise MethodFailed(f"device '{device_id}' answered method '{method_name}' with status {status}")


@click.group()
@global_options
def method() -> None:
    """Invoke direct methods on a device."""


@method.command("invoke")
@click.argument("device_id", metavar="DEVICE")
@click.argument("method_name", metavar="METHOD")
@click.option("--payload", metavar="JSON|@FILE",
              help="Method payload: JSON text, or @FILE to read it from a file. Default: none.")
@response_timeout_option()
@connect_timeout_option()
@global_options
def invoke(device_id: str, method_name: str, payload: str | None, response_timeout: int,
           connect_timeout: int) -> None:
    """Call METHOD on DEVICE and print the device's status and payload.

    Exits 0 only when the device answered with a 2xx status.
    """
    state = app_state()
    body = parse_json_option(payload, "--payload")
    check_method_payload(body)
    result = state.hub().invoke_method(device_id, method_name, body, response_timeout, connect_timeout)
    out = state.output()
    if out.json_mode:
        out.json({"deviceId": device_id, "methodName": method_name, "status": result.get("status"),
                  "payload": result.get("payload")})
    else:
        show_method_result(out, device_id, method_name, result)
    _require_success(device_id, method_name, result)


@click.command()
@click.argument("device_id", metavar="DEVICE")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until the device reports a new rebootTime.")
@click.option("--timeout", type=click.FloatRange(min=0), default=120, show_default=True,
              help="Seconds to wait for the new rebootTime before giving up (exit code 14).")
@click.option("--poll-interval", type=click.FloatRange(min=0.05), default=5, show_default=True,
              help="Longest pause in seconds between twin reads; polling starts at 0.25 s and backs off "
                   "to this.")
@response_timeout_option()
@connect_timeout_option()
@global_options
def reboot(device_id: str, wait: bool, timeout: float, poll_interval: float, response_timeout: int,
           connect_timeout: int) -> None:
    """Reboot DEVICE (method rebootDevice) and wait until it reports a new rebootTime.

    Reads the reported rebootTime first, so an old value is never mistaken for the new one.
    """
    state = app_state()
    hub, out = state.hub(), state.output()
    before = reported_value(hub.get_twin(device_id), "rebootTime")
    result = hub.invoke_method(device_id, "rebootDevice", None, response_timeout, connect_timeout)
    if not out.json_mode:
        show_method_result(out, device_id, "rebootDevice", result)
    report = {"deviceId": device_id,
              "method": {"status": result.get("status"), "payload": result.get("payload")},
              "previousRebootTime": before, "rebootTime": None, "rebootState": None, "waited": wait}
    if out.json_mode and (not wait or not _succeeded(result)):
        out.json(report)
    _require_success(device_id, "rebootDevice", result)
    if not wait:
        return

    with out.spinner(f"Waiting for {device_id} to report a new rebootTime (up to {timeout:g} s)") as update:
        def on_poll(twin: dict, elapsed: float) -> None:
            update(f"Waiting for {device_id} to reboot: rebootState "
                   f"{reported_value(twin, 'rebootState') or '?'}, {elapsed:.0f} s")
        try:
            twin = wait_for_reported_change(hub, state.poller(poll_interval), device_id, "rebootTime",
                                            before, timeout, on_poll)
        except PollTimedOut as e:
            raise WaitTimeout(
                f"device '{device_id}' reported no new rebootTime within {timeout:g} s "
                f"(still {before!r}, rebootState {reported_value(e.last, 'rebootState')!r})") from None
    report["rebootTime"] = reported_value(twin, "rebootTime")
    report["rebootState"] = reported_value(twin, "rebootState")
    if out.json_mode:
        out.json(report)
    else:
        out.line(f"Last reboot time: {report['rebootTime']}")
