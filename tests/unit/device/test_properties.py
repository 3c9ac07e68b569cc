"""Desired patches -> acknowledgements; the twin at start -> only what changed is acknowledged."""

import pytest

from device.properties import handle_patch, reconcile


def ack(value, version, status=200, description="completed"):
    return {"value": value, "ac": status, "ad": description, "av": version}


def test_name_and_brightness_are_applied_and_acknowledged():
    result = handle_patch({"name": "kitchen", "brightness": 70, "$version": 4})
    assert result.version == 4
    assert result.reported == {"name": ack("kitchen", 4), "brightness": ack(70, 4)}
    values = {}
    result.apply_to(values)
    assert values == {"name": "kitchen", "brightness": 70}


@pytest.mark.parametrize("patch,reason", [
    ({"brightness": "high"}, "brightness must be a number, got 'high'"),
    ({"brightness": True}, "brightness must be a number, got True"),
    ({"brightness": [1]}, "brightness must be a number"),
    ({"name": ""}, "name must be a non-empty text"),
    ({"name": 12}, "name must be a non-empty text, got 12"),
    ({"name": "x" * 200}, "name is longer than 128 characters"),
])
def test_an_invalid_value_is_acknowledged_with_400_and_not_applied(patch, reason):
    name = next(iter(patch))
    result = handle_patch({**patch, "$version": 9})
    acknowledgement = result.reported[name]
    assert acknowledgement["ac"] == 400 and acknowledgement["av"] == 9
    assert acknowledgement["value"] == patch[name]
    assert acknowledgement["ad"].startswith(reason)
    values = {name: "previous"}
    result.apply_to(values)
    assert values == {name: "previous"}


def test_other_desired_properties_are_applied_and_acknowledged_the_same_way():
    result = handle_patch({"building": 43, "floor": 3, "location": {"room": "B12"}, "$version": 2})
    assert result.reported == {"building": ack(43, 2), "floor": ack(3, 2), "location": ack({"room": "B12"}, 2)}


def test_a_removed_property_removes_its_acknowledgement():
    result = handle_patch({"floor": None, "$version": 5})
    assert result.reported == {"floor": None}
    values = {"floor": 3, "building": 43}
    result.apply_to(values)
    assert values == {"building": 43}


def test_names_the_device_reports_itself_are_refused_without_an_acknowledgement():
    result = handle_patch({"rebootTime": "2000-01-01", "door": {"locked": False}, "name": "x", "$version": 3})
    assert result.reported == {"name": ack("x", 3)}
    refused = {u.name: u for u in result.updates if u.status is None}
    assert set(refused) == {"rebootTime", "door"}
    values = {}
    result.apply_to(values)
    assert values == {"name": "x"}


def test_metadata_and_version_are_not_properties():
    result = handle_patch({"$version": 3, "$metadata": {"$lastUpdated": "x"}})
    assert result.reported == {} and result.updates == ()


def test_reconcile_acknowledges_only_what_changed_while_offline():
    twin = {
        "desired": {"name": "kitchen", "brightness": 40, "building": 43, "$version": 7},
        "reported": {"name": ack("kitchen", 5), "brightness": ack(30, 5), "$version": 12},
    }
    result = reconcile(twin)
    assert result.version == 7
    assert result.reported == {"brightness": ack(40, 7), "building": ack(43, 7)}
    values = {}
    result.apply_to(values)
    assert values == {"name": "kitchen", "brightness": 40, "building": 43}  # all applied locally


def test_reconcile_with_everything_acknowledged_reports_nothing():
    twin = {"desired": {"name": "kitchen", "$version": 7}, "reported": {"name": ack("kitchen", 7)}}
    result = reconcile(twin)
    assert result.reported == {}
    assert [(u.name, u.acknowledged) for u in result.updates] == [("name", False)]


def test_reconcile_does_not_repeat_a_400():
    twin = {"desired": {"brightness": "high", "$version": 4},
            "reported": {"brightness": ack("high", 4, 400, "brightness must be a number, got 'high'")}}
    assert reconcile(twin).reported == {}


def test_reconcile_uses_per_property_versions_when_the_twin_has_metadata():
    # Same value, but desired was rewritten at version 6 after the device acknowledged version 5:
    # the value is unchanged, so no new acknowledgement is needed.
    twin = {"desired": {"name": "a", "$version": 8, "$metadata": {"name": {"$lastUpdatedVersion": 6}}},
            "reported": {"name": ack("a", 5)}}
    assert reconcile(twin).reported == {}
    twin["desired"]["name"] = "b"
    assert reconcile(twin).reported == {"name": ack("b", 8)}


def test_reconcile_removes_acknowledgements_of_properties_removed_while_offline():
    twin = {"desired": {"$version": 9},
            "reported": {"floor": ack(3, 4), "rebootTime": "2026-01-01T00:00:00Z",
                         "rundiagnostics": {"value": "done"}}}
    result = reconcile(twin)
    assert result.reported == {"floor": None}


def test_reconcile_of_an_empty_twin():
    result = reconcile({"desired": {"$version": 1}, "reported": {"$version": 1}})
    assert result.reported == {} and result.updates == () and result.version == 1
