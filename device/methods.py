"""Direct methods (and IoT Central commands) as plain functions: request -> answer + reported patch.

No SDK calls here. A method answers at once; work that takes time (a reboot, a diagnostics run, the
door unlocking itself) is described by a FollowUp that the app runs in the background, so one slow
method never delays another (the tutorial's handler slept 20 s and blocked everything).

Reported properties written here (a twin query can select on any of them):
  rebootState      "rebooting" | "running"
  rebootStartTime  when the last reboot began (ISO 8601 UTC)
  rebootTime       when the last reboot finished (ISO 8601 UTC; the tutorial's property)
  door             {"locked", "lockTime", "until", "unlockTime"}
  led              {"on", "blinkInterval"}
  rundiagnostics   {"value": "Diagnostics run complete at ..."}
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

REBOOT = "rebootDevice"
LOCK_DOOR = "lockDoor"
BLINK = "blink"
TURN_ON = "turnon"
TURN_OFF = "turnoff"
RUN_DIAGNOSTICS = "rundiagnostics"
METHOD_NAMES = (REBOOT, LOCK_DOOR, BLINK, TURN_ON, TURN_OFF, RUN_DIAGNOSTICS)

#: The keys of FollowUps, also the names of the work in progress passed back in as `busy`.
REBOOT_WORK = "reboot"
DOOR_WORK = "door"
DIAGNOSTICS_WORK = "diagnostics"

MAX_LOCK = timedelta(days=7)
MAX_BLINK_SECONDS = 3600
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, as IoT Hub writes its own times."""
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class FollowUp:
    """Work that continues after the answer: wait `delay` seconds, then report `report(now)`."""
    key: str  # one follow-up per key runs at a time; a new one replaces the old (except reboot)
    delay: float
    report: Callable[[datetime], dict[str, Any]]
    event: str  # the log line when it completes, e.g. "reboot finished"


@dataclass(frozen=True)
class MethodConfig:
    reboot_delay: float = 5.0
    diagnostics_delay: float = 3.0


@dataclass(frozen=True)
class MethodResult:
    status: int
    payload: Any
    reported: dict[str, Any] | None = None  # reported right after the answer
    follow_up: FollowUp | None = None
    cancels: tuple[str, ...] = ()  # follow-ups this call ends (a new lock ends the pending unlock)
    detail: str = ""  # a short note for the log line (the reason of a 400, the lock time)


@dataclass(frozen=True)
class MethodCall:
    name: str
    payload: Any = None
    busy: Collection[str] = field(default_factory=frozenset)  # keys of follow-ups in progress


class BadPayload(ValueError):
    """A payload the method cannot use; the message is the reason sent back with 400."""


def handle(call: MethodCall, now: datetime, config: MethodConfig = MethodConfig()) -> MethodResult:
    """Answer one method call. Never raises: a bad payload is a 400, an unknown name a 404."""
    handler = _HANDLERS.get(call.name)
    if handler is None:
        return MethodResult(404, {"Response": "Unknown method"}, detail="unknown method")
    try:
        return handler(call, now, config)
    except BadPayload as e:
        return MethodResult(400, {"Response": f"Invalid payload: {e}"}, detail=str(e))


def _reboot(call: MethodCall, now: datetime, config: MethodConfig) -> MethodResult:
    if REBOOT_WORK in call.busy:
        return MethodResult(409, {"Response": "Reboot already in progress"}, detail="already rebooting")
    started = iso(now)

    def finished(at: datetime) -> dict[str, Any]:
        return {"rebootState": "running", "rebootTime": iso(at)}

    return MethodResult(
        200, {"Response": "Reboot started", "rebootDelaySeconds": config.reboot_delay},
        reported={"rebootState": "rebooting", "rebootStartTime": started},
        follow_up=FollowUp(REBOOT_WORK, config.reboot_delay, finished, "reboot finished"),
        detail=f"rebooting for {config.reboot_delay:g} s")


def _lock_door(call: MethodCall, now: datetime, config: MethodConfig) -> MethodResult:
    body = _object_payload(call.payload, example='{"lockTime": "10m"}')
    unknown = sorted(set(body) - {"lockTime"})
    if unknown:
        raise BadPayload(f"unknown field {unknown[0]!r} (expected {{\"lockTime\": \"10m\"}})")
    lock_for = parse_duration(body["lockTime"]) if body.get("lockTime") is not None else None
    if lock_for is not None and not (timedelta(0) < lock_for <= MAX_LOCK):
        raise BadPayload(f"lockTime must be more than 0 and at most {MAX_LOCK.days} days")
    until = now + lock_for if lock_for else None
    door = {"locked": True, "lockTime": iso(now), "until": iso(until) if until else None,
            "unlockTime": None}
    follow_up = None
    if lock_for:
        follow_up = FollowUp(DOOR_WORK, lock_for.total_seconds(),
                             lambda at: {"door": {"locked": False, "unlockTime": iso(at)}},
                             "door unlocked")
    detail = f"locked until {door['until']}" if until else "locked"
    return MethodResult(200, {"Response": "lockDoor called successfully"}, reported={"door": door},
                        follow_up=follow_up, cancels=(DOOR_WORK,), detail=detail)


def _blink(call: MethodCall, now: datetime, config: MethodConfig) -> MethodResult:
    seconds = _blink_interval(call.payload)
    return MethodResult(200, {"result": True, "data": f"blinking LED every {seconds:g} seconds"},
                        reported={"led": {"on": True, "blinkInterval": seconds}},
                        detail=f"every {seconds:g} s")


def _turn(on: bool) -> Callable[[MethodCall, datetime, MethodConfig], MethodResult]:
    def turn(call: MethodCall, now: datetime, config: MethodConfig) -> MethodResult:
        word = "on" if on else "off"
        return MethodResult(200, {"result": True, "data": f"LED turned {word}"},
                            reported={"led": {"on": on, "blinkInterval": None}}, detail=f"LED {word}")
    return turn


def _run_diagnostics(call: MethodCall, now: datetime, config: MethodConfig) -> MethodResult:
    def complete(at: datetime) -> dict[str, Any]:
        return {"rundiagnostics": {"value": f"Diagnostics run complete at {iso(at)}"}}

    return MethodResult(202, {"result": True, "data": "Diagnostics run started"},
                        follow_up=FollowUp(DIAGNOSTICS_WORK, config.diagnostics_delay, complete,
                                           "diagnostics complete"),
                        detail=f"results in {config.diagnostics_delay:g} s")


_HANDLERS: dict[str, Callable[[MethodCall, datetime, MethodConfig], MethodResult]] = {
    REBOOT: _reboot,
    LOCK_DOOR: _lock_door,
    BLINK: _blink,
    TURN_ON: _turn(True),
    TURN_OFF: _turn(False),
    RUN_DIAGNOSTICS: _run_diagnostics,
}


def _object_payload(payload: Any, *, example: str) -> dict[str, Any]:
    """None/"" -> {}; a dict as is; a JSON text of an object (what the service SDK sends when its
    caller passes a str, as the jobs tutorial does) -> that object."""
    if payload is None or payload == "":
        return {}
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            raise BadPayload(f"payload is not JSON (expected an object like {example})") from None
        if payload is None:
            return {}
    if not isinstance(payload, dict):
        raise BadPayload(f"payload must be an object like {example}")
    return payload


def parse_duration(value: Any) -> timedelta:
    """'30s', '10m', '2h', '1d', or a number of seconds."""
    if isinstance(value, bool):
        raise BadPayload(f"lockTime {value!r} is not a duration like 30s, 10m or 2h")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:  # an int too big for a float
            raise BadPayload(f"lockTime must be at most {MAX_LOCK.days} days") from None
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]
    else:
        raise BadPayload(f"lockTime {value!r} is not a duration like 30s, 10m or 2h")
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN, infinities
        raise BadPayload(f"lockTime {value!r} is not a duration like 30s, 10m or 2h")
    if seconds > MAX_LOCK.total_seconds():  # checked before timedelta(), which overflows on huge values
        raise BadPayload(f"lockTime must be more than 0 and at most {MAX_LOCK.days} days")
    return timedelta(seconds=seconds)


def _blink_interval(payload: Any) -> float:
    """The blink command's payload is the interval in seconds (a number, or a text of one)."""
    if payload is None or payload == "":
        return 1.0
    value = payload
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise BadPayload(f"blink interval {payload!r} is not a number of seconds") from None
    if isinstance(value, dict) and set(value) == {"interval"}:
        value = value["interval"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadPayload(f"blink interval {payload!r} is not a number of seconds")
    if not 0 < value <= MAX_BLINK_SECONDS:
        raise BadPayload(f"blink interval must be more than 0 and at most {MAX_BLINK_SECONDS} seconds")
    return float(value)
