"""The tutorial stories, told with the service CLI against running device listeners.

1. reboot: "Get started with device management": rebootDevice, then wait for a new rebootTime.
2. jobs: "Schedule and broadcast jobs": a scheduled lockDoor method job and a twin-update job
   ({"building": 43, "floor": 3}) over the devices a twin query selects, with per-device results.
3. sensor: "Connect a Python client to IoT Central": a DPS-provisioned device whose telemetry
   reaches the hub, which answers blink/turnon/turnoff/rundiagnostics and acknowledges name and
   brightness.
4. jobs at scale (`demo --scale N`): the jobs tutorial's point, a method job and a twin-update job
   over N devices (1,000 or more) of one `iothub-device --count N`, with per-device results summed up.

Each story prints its commands and their output, then checks the outcome through --json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .steps import StepFailed, Steps, not_telemetry

POLL = ("--poll-interval", "0.5")  # the demo's devices answer in well under a second
LAB_TAG = {"site": "lab"}
BUILDING_PATCH = {"building": 43, "floor": 3}
WRITABLE_PATCH = {"name": "Kitchen sensor", "brightness": 80}
SENSOR_COMMANDS = (("blink", "2", 200), ("turnon", None, 200), ("turnoff", None, 200),
                   ("rundiagnostics", None, 202))


@dataclass(frozen=True)
class Cast:
    """The devices the stories talk to (all running before the stories start)."""

    device: str  # the tutorials' myDeviceId
    fleet: tuple[str, ...]  # one --count process
    chosen: tuple[str, ...]  # the part of the fleet the twin query selects (tagged site=lab)
    sensor: str  # provisioned through DPS, sends telemetry
    fleet_prefix: str = "door-"
    job_suffix: str = ""  # keeps job ids unique on a hub that already ran the demo
    scale: int = 0  # devices of the jobs-at-scale story's fleet (0: no such story)
    scale_prefix: str = "bulk-"


def reported(twin: dict, name: str) -> Any:
    return ((twin.get("properties") or {}).get("reported") or {}).get(name)


def compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "))


# -- 1. reboot ------------------------------------------------------------------------------------------
def reboot_story(steps: Steps, cast: Cast) -> str:
    device = cast.device
    steps.say(f"The operator reboots {device} remotely and waits until it reports a new rebootTime.")
    before = reported(steps.json("twin", "show", device), "rebootTime")
    result = steps.show("reboot", device, *POLL, "--timeout", "60")
    if "status 200" not in result.stdout or "Last reboot time:" not in result.stdout:
        raise StepFailed("reboot did not print the device's 200 answer and the new rebootTime")
    twin = steps.json("twin", "show", device)
    after = reported(twin, "rebootTime")
    if not after or after == before or reported(twin, "rebootState") != "running":
        raise StepFailed(f"after the reboot: rebootTime {after!r} (before {before!r}), "
                         f"rebootState {reported(twin, 'rebootState')!r}")
    steps.say("A twin query tells which devices are rebooting and when each last rebooted:")
    steps.show("query", "SELECT deviceId, properties.reported.rebootState, properties.reported.rebootTime "
                        f"FROM devices WHERE deviceId = '{device}'")
    steps.device_lines(not_telemetry)
    return f"{device} rebooted (rebootTime {before or 'none'} -> {after})"


# -- 2. jobs --------------------------------------------------------------------------------------------
def jobs_story(steps: Steps, cast: Cast) -> str:
    chosen = set(cast.chosen)
    steps.say(f"Tag {len(cast.chosen)} of the {len(cast.fleet)} doors, then let a twin query choose the "
              "devices of two jobs.")
    for device in cast.chosen:
        steps.show("twin", "update", device, "--tags", compact(LAB_TAG))
    condition = "tags.site = 'lab'"
    steps.show("query", f"SELECT deviceId, tags.site FROM devices WHERE STARTSWITH(deviceId, '{cast.fleet_prefix}')")
    selected = {item.get("deviceId") for item in steps.json("query", f"SELECT deviceId FROM devices WHERE {condition}")}
    if selected != chosen:
        raise StepFailed(f"the query {condition!r} selected {sorted(selected)}, expected {sorted(chosen)}")

    steps.say()
    steps.say("A lockDoor method job, scheduled to start in 2 seconds:")
    lock_job = f"demo-lockdoor{cast.job_suffix}"
    steps.show("job", "schedule-method", "--method", "lockDoor", "--payload", compact({"lockTime": "10m"}),
               "--query-condition", condition, "--start-time", "+2s", "--job-id", lock_job,
               "--wait", "--timeout", "60", *POLL)
    steps.show("job", "show", lock_job, "--devices")
    _check_job(steps, lock_job, chosen, lambda item: _method_status(item) == 200, "answered 200")
    for device in set(cast.fleet) - chosen:
        door = reported(steps.json("twin", "show", device), "door")
        if door and door.get("locked"):
            raise StepFailed(f"{device} was not selected by the query but its door is locked")
    steps.device_lines(not_telemetry)

    steps.say()
    steps.say(f"A twin-update job setting desired properties {compact(BUILDING_PATCH)}:")
    twin_job = f"demo-building{cast.job_suffix}"
    steps.show("job", "schedule-twin-update", "--desired", compact(BUILDING_PATCH),
               "--query-condition", condition, "--job-id", twin_job, "--wait", "--timeout", "60", *POLL)
    steps.show("job", "show", twin_job, "--devices")
    _check_job(steps, twin_job, chosen, lambda item: item.get("status") == "completed", "completed")
    steps.wait_until(lambda: _all_acknowledged(steps, condition, len(chosen)),
                     "every selected device acknowledging building 43 and floor 3", timeout=30)
    steps.say("Each device acknowledged the new desired properties (value, ac, ad, av):")
    steps.show("query", "SELECT deviceId, properties.reported.building, properties.reported.floor "
                        f"FROM devices WHERE {condition}")
    steps.device_lines(not_telemetry)
    return (f"lockDoor and twin-update jobs completed on {len(chosen)} devices chosen by a query; "
            f"{len(cast.fleet) - len(chosen)} left alone")


def _method_status(item: dict) -> int | None:
    return ((item.get("outcome") or {}).get("deviceMethodResponse") or {}).get("status")


def _check_job(steps: Steps, job_id: str, devices: set[str], ok: Callable[[dict], bool], what: str) -> None:
    job = steps.json("job", "show", job_id, "--devices")
    stats = job.get("deviceJobStatistics") or {}
    results = {item.get("deviceId"): item for item in job.get("devices") or []}
    if job.get("status") != "completed" or stats.get("succeededCount") != len(devices):
        raise StepFailed(f"job {job_id}: status {job.get('status')!r}, statistics {stats}")
    if set(results) != devices:
        raise StepFailed(f"job {job_id} ran on {sorted(results)}, expected {sorted(devices)}")
    failed = sorted(d for d, item in results.items() if not ok(item))
    if failed:
        raise StepFailed(f"job {job_id}: {', '.join(failed)} not {what}")


def _all_acknowledged(steps: Steps, condition: str, count: int) -> bool:
    items = steps.json("query", "SELECT deviceId, properties.reported.building, properties.reported.floor "
                                f"FROM devices WHERE {condition}")
    acknowledged = [item for item in items
                    if _ack(item.get("building"), 43) and _ack(item.get("floor"), 3)]
    return len(acknowledged) == count


def _ack(value: Any, expected: Any) -> bool:
    return isinstance(value, dict) and value.get("value") == expected and value.get("ac") == 200


# -- 3. IoT Central sensor ---------------------------------------------------------------------------------
def sensor_story(steps: Steps, cast: Cast) -> str:
    sensor = cast.sensor
    steps.say(f"{sensor} was provisioned through DPS (group enrollment) when it started:")
    steps.earlier_device_lines(sensor, lambda line: " provision" in line)
    steps.say("and the hub knows it now:")
    steps.show("device", "show", sensor)

    steps.say()
    steps.say("Its telemetry reaches the hub's built-in Event Hubs-compatible endpoint, where Azure keeps it "
              "too; `monitor` reads it there (found through the hub's redirect, as `az iot hub monitor-events` "
              "does):")
    result = steps.show("monitor", sensor, "--start", "earliest", "--count", "2", "--timeout", "30",
                        "--properties", timeout=90)
    readings = [line for line in result.stdout.splitlines() if f" {sensor} " in line]
    if len(readings) < 2:
        raise StepFailed(f"monitor showed {len(readings)} telemetry messages from {sensor}, expected 2")

    steps.say()
    steps.say("The IoT Central commands:")
    for name, payload, status in SENSOR_COMMANDS:
        result = steps.show("method", "invoke", sensor, name, *(("--payload", payload) if payload else ()))
        if f"status {status}" not in result.stdout:
            raise StepFailed(f"{name} did not answer {status}")
    steps.show("twin", "wait", sensor, "--reported", "rundiagnostics.value", "--timeout", "30", *POLL)

    steps.say()
    steps.say("The writable properties name and brightness, acknowledged by the device:")
    steps.show("twin", "update", sensor, "--desired", compact(WRITABLE_PATCH))
    version = ((steps.json("twin", "show", sensor).get("properties") or {}).get("desired") or {}).get("$version")
    steps.show("twin", "wait", sensor, "--reported", "brightness.av", "--equals", str(version),
               "--timeout", "30", *POLL)
    steps.wait_until(lambda: _writable_acknowledged(steps.json("twin", "show", sensor), version),
                     "acknowledgements of name and brightness", timeout=30)
    steps.show("query", "SELECT deviceId, properties.reported.name, properties.reported.brightness "
                        f"FROM devices WHERE deviceId = '{sensor}'")
    steps.device_lines(lambda line: sensor in line and " telemetry " not in line)
    return (f"{sensor}: provisioned, {len(readings)} telemetry messages read, 4 commands answered, "
            "name and brightness acknowledged")


def _writable_acknowledged(twin: dict, version: Any) -> bool:
    return all(_ack_version(reported(twin, name), value, version) for name, value in WRITABLE_PATCH.items())


def _ack_version(ack: Any, value: Any, version: Any) -> bool:
    return (isinstance(ack, dict) and ack.get("value") == value and ack.get("ac") == 200
            and ack.get("av") == version)


# -- 4. jobs at scale ---------------------------------------------------------------------------------------
SCALE_PATCH = {"building": 44, "floor": 7}


def scale_story(steps: Steps, cast: Cast) -> str:
    """A lockDoor job and a twin-update job over every device of a big fleet (one --count process)."""
    count, condition = cast.scale, f"STARTSWITH(deviceId, '{cast.scale_prefix}')"
    steps.say(f"{count:,} devices run in one `iothub-device --count {count}` process (the fleet engine: one "
              "event loop, the listener's own handlers). A twin query counts them:")
    steps.show("query", f"SELECT COUNT() AS devices FROM devices WHERE {condition} AND connectionState = 'Connected'")

    steps.say()
    steps.say(f"A lockDoor method job over all {count:,}:")
    lock_job = f"demo-scale-lockdoor{cast.job_suffix}"
    steps.show("job", "schedule-method", "--method", "lockDoor", "--payload", compact({"lockTime": "10m"}),
               "--query-condition", condition, "--job-id", lock_job, "--wait", "--timeout", "300", *POLL,
               timeout=330)
    statuses = _device_results(steps, lock_job, count, _method_status)
    if statuses != {200: count}:
        raise StepFailed(f"job {lock_job}: method answers by status {statuses}, expected {count} x 200")
    steps.say(f"  per device: {_tally(statuses)} (from `job show {lock_job} --devices`)")

    steps.say()
    steps.say(f"A twin-update job setting {compact(SCALE_PATCH)} on all {count:,}:")
    twin_job = f"demo-scale-building{cast.job_suffix}"
    steps.show("job", "schedule-twin-update", "--desired", compact(SCALE_PATCH), "--query-condition", condition,
               "--job-id", twin_job, "--wait", "--timeout", "300", *POLL, timeout=330)
    outcomes = _device_results(steps, twin_job, count, lambda item: item.get("status"))
    if outcomes != {"completed": count}:
        raise StepFailed(f"job {twin_job}: device results {outcomes}, expected {count} completed")
    steps.say(f"  per device: {_tally(outcomes)}")
    acknowledged = (f"SELECT COUNT() AS acknowledged FROM devices WHERE {condition} AND "
                    f"properties.reported.floor.value = {SCALE_PATCH['floor']} AND properties.reported.floor.ac = 200")
    steps.wait_until(lambda: (steps.json("query", acknowledged) or [{}])[0].get("acknowledged") == count,
                     f"all {count:,} devices acknowledging floor {SCALE_PATCH['floor']}", timeout=120)
    steps.say("and every device acknowledged the new desired properties:")
    steps.show("query", acknowledged)
    return f"lockDoor and twin-update jobs over {count:,} devices: every device answered 200 and acknowledged"


def _device_results(steps: Steps, job_id: str, count: int, key: Callable[[dict], Any]) -> dict[Any, int]:
    """The job's per-device results, tallied by `key` (a method's status, a twin update's outcome)."""
    job = steps.json("job", "show", job_id, "--devices", timeout=120)
    items = job.get("devices") or []
    if job.get("status") != "completed" or len(items) != count:
        raise StepFailed(f"job {job_id}: status {job.get('status')!r}, {len(items)} device results "
                         f"(expected {count}), statistics {job.get('deviceJobStatistics')}")
    tally: dict[Any, int] = {}
    for item in items:
        tally[key(item)] = tally.get(key(item), 0) + 1
    return tally


def _tally(counts: dict[Any, int]) -> str:
    return ", ".join(f"{n:,} {value}" for value, n in sorted(counts.items(), key=lambda kv: -kv[1]))
