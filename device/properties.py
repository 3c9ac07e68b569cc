"""Desired properties -> local settings and acknowledgements (reported patches). No SDK calls here.

Every desired property gets the same treatment (a choice, documented in the README):
  - name and brightness are checked (name a non-empty text, brightness a number); a bad value is
    acknowledged with ac 400 and the reason, and not applied;
  - any other property (building, floor, ... from the jobs tutorial) is applied as given;
  - each is acknowledged with IoT Central's writable-property shape
        {"<name>": {"value": <value>, "ac": 200|400, "ad": "completed"|<reason>, "av": <$version>}}
    so a twin query can tell which devices applied which version
    (SELECT deviceId FROM devices WHERE properties.reported.floor.av = properties.desired.$version);
  - null (the property was removed) removes the acknowledgement too (reported null);
  - names the device reports itself (rebootTime, door, ...) are refused and not acknowledged, so a
    desired property can never overwrite the device's own state.

At start (and after a reconnect) the twin is reconciled: every desired value is applied locally, but
only properties changed since the device last acknowledged them are acknowledged again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_NAME_LENGTH = 128

#: Reported properties that belong to the device (see methods.py and app.py), never acknowledged.
DEVICE_OWNED = frozenset({
    "rebootState", "rebootStartTime", "rebootTime", "door", "led", "rundiagnostics",
    "swVersion", "processorArchitecture", "state",
})


@dataclass(frozen=True)
class PropertyUpdate:
    name: str
    value: Any
    status: int | None  # the ack's "ac"; None when refused without an acknowledgement
    description: str
    acknowledged: bool = True  # False when up to date at start (applied, not re-acknowledged)

    @property
    def applied(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class DesiredResult:
    version: int | None
    updates: tuple[PropertyUpdate, ...] = ()
    reported: dict[str, Any] = field(default_factory=dict)  # the acknowledgements to report

    def apply_to(self, values: dict[str, Any]) -> None:
        """Bring the device's local copy of the desired values up to date."""
        for update in self.updates:
            if update.applied and update.value is None:
                values.pop(update.name, None)
            elif update.applied:
                values[update.name] = update.value


def acknowledgement(value: Any, status: int, description: str, version: int | None) -> dict[str, Any]:
    return {"value": value, "ac": status, "ad": description, "av": version}


def _check_name(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"name must be a non-empty text, got {value!r}"
    if len(value) > MAX_NAME_LENGTH:
        return f"name is longer than {MAX_NAME_LENGTH} characters"
    return None


def _check_brightness(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"brightness must be a number, got {value!r}"
    return None


_CHECKS = {"name": _check_name, "brightness": _check_brightness}


def _decide(name: str, value: Any) -> PropertyUpdate:
    if name in DEVICE_OWNED:
        return PropertyUpdate(name, value, None, "reported by the device itself; ignored",
                              acknowledged=False)
    if value is None:
        return PropertyUpdate(name, None, 200, "removed")
    problem = _CHECKS[name](value) if name in _CHECKS else None
    if problem:
        return PropertyUpdate(name, value, 400, problem)
    return PropertyUpdate(name, value, 200, "completed")


def _report(update: PropertyUpdate, version: int | None) -> Any:
    if update.value is None and update.status == 200:
        return None  # reported null deletes the acknowledgement
    return acknowledgement(update.value, update.status, update.description, version)


def version_of(desired: Mapping[str, Any]) -> int | None:
    version = desired.get("$version")
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def handle_patch(patch: Mapping[str, Any]) -> DesiredResult:
    """A desired-properties patch as the hub sends it (only the changed names, plus $version)."""
    version = version_of(patch)
    updates = tuple(_decide(name, value) for name, value in patch.items() if not name.startswith("$"))
    reported = {u.name: _report(u, version) for u in updates if u.acknowledged}
    return DesiredResult(version, updates, reported)


def reconcile(twin: Mapping[str, Any]) -> DesiredResult:
    """The whole twin read at start or after a reconnect: apply everything, acknowledge only what
    changed since the device's last acknowledgement (so a restart does not re-acknowledge)."""
    desired = twin.get("desired") or {}
    reported = twin.get("reported") or {}
    version = version_of(desired)
    metadata = desired.get("$metadata") if isinstance(desired.get("$metadata"), Mapping) else {}
    updates: list[PropertyUpdate] = []
    patch: dict[str, Any] = {}
    for name, value in desired.items():
        if name.startswith("$"):
            continue
        update = _decide(name, value)
        if update.acknowledged and _already_acknowledged(reported.get(name), update,
                                                          _property_version(metadata, name, version)):
            update = PropertyUpdate(name, value, update.status, update.description, acknowledged=False)
        elif update.acknowledged:
            patch[name] = _report(update, version)
        updates.append(update)
    # An acknowledgement of a desired property removed while the device was offline: remove it too.
    for name, prior in reported.items():
        if name not in desired and name not in DEVICE_OWNED and _is_acknowledgement(prior):
            updates.append(PropertyUpdate(name, None, 200, "removed"))
            patch[name] = None
    return DesiredResult(version, tuple(updates), patch)


def _property_version(metadata: Mapping[str, Any], name: str, version: int | None) -> int | None:
    entry = metadata.get(name)
    if isinstance(entry, Mapping) and isinstance(entry.get("$lastUpdatedVersion"), int):
        return entry["$lastUpdatedVersion"]
    return version


def _is_acknowledgement(prior: Any) -> bool:
    return isinstance(prior, Mapping) and "ac" in prior and "av" in prior


def _already_acknowledged(prior: Any, update: PropertyUpdate, property_version: int | None) -> bool:
    """True when the reported ack already covers this desired value."""
    if not _is_acknowledgement(prior):
        return False
    if update.value is None:
        return False
    same_answer = prior.get("value") == update.value and prior.get("ac") == update.status
    av = prior.get("av")
    newer_or_same = (isinstance(av, int) and property_version is not None and av >= property_version)
    return same_answer or (newer_or_same and prior.get("value") == update.value)
