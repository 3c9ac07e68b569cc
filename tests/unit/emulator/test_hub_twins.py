"""Twins: per-section $version only goes up, null deletes, $metadata, etag and version, pushes."""

import pytest

from emulator.hub import ArgumentInvalid, FakeClock, Hub, HubError, PreconditionFailed
from tests.unit.emulator.hub_fakes import RecordingConnections


@pytest.fixture
def clock():
    return FakeClock(1_700_000_000)


@pytest.fixture
def hub(clock):
    hub = Hub("localhost", clock=clock)
    hub.create_device("d1")
    return hub


def test_new_twin_starts_at_version_1(hub):
    twin = hub.get_twin("d1")
    assert twin["properties"]["desired"]["$version"] == 1
    assert twin["properties"]["reported"]["$version"] == 1
    assert hub.device_twin("d1") == {"desired": {"$version": 1}, "reported": {"$version": 1}}


def test_reported_patch_merges_deletes_with_null_and_bumps_version(hub):
    assert hub.report_properties("d1", {"a": 1, "nested": {"x": 1, "y": 2}}) == 2
    assert hub.report_properties("d1", {"a": None, "nested": {"x": None, "z": 3}}) == 3
    assert hub.device_twin("d1")["reported"] == {"nested": {"y": 2, "z": 3}, "$version": 3}


def test_desired_patch_pushes_patch_with_version_to_online_device(hub):
    connections = RecordingConnections()
    hub.attach_connections(connections)
    hub.patch_desired("d1", {"t": 1})  # offline: stored, not pushed
    assert connections.desired == []
    hub.device_connected("d1")
    hub.patch_desired("d1", {"t": None, "u": {"v": 2}})
    assert connections.desired == [("d1", {"t": None, "u": {"v": 2}, "$version": 3})]
    assert hub.device_twin("d1")["desired"] == {"u": {"v": 2}, "$version": 3}


def test_metadata_records_last_updated_per_property(hub, clock):
    hub.patch_desired("d1", {"a": 1, "b": {"c": 2}})
    clock.advance(60)
    hub.patch_desired("d1", {"b": {"d": 3}})
    meta = hub.get_twin("d1")["properties"]["desired"]["$metadata"]
    assert meta["a"] == {"$lastUpdated": "2023-11-14T22:13:20.000000Z", "$lastUpdatedVersion": 2}
    assert meta["b"]["c"]["$lastUpdated"] == "2023-11-14T22:13:20.000000Z"
    assert meta["b"]["d"] == {"$lastUpdated": "2023-11-14T22:14:20.000000Z", "$lastUpdatedVersion": 3}
    assert meta["b"]["$lastUpdated"] == "2023-11-14T22:14:20.000000Z"
    assert meta["$lastUpdatedVersion"] == 3
    hub.patch_desired("d1", {"a": None})
    assert "a" not in hub.get_twin("d1")["properties"]["desired"]["$metadata"]


def test_twin_version_and_etag_change_on_every_write(hub):
    first = hub.get_twin("d1")
    hub.update_twin("d1", {"tags": {"site": "A"}})
    second = hub.get_twin("d1")
    hub.report_properties("d1", {"x": 1})
    third = hub.get_twin("d1")
    assert first["version"] < second["version"] < third["version"]
    assert len({first["etag"], second["etag"], third["etag"]}) == 3
    assert second["tags"] == {"site": "A"}
    assert second["properties"]["desired"]["$version"] == 1  # tags do not touch desired


def test_update_twin_if_match(hub):
    etag = hub.get_twin("d1")["etag"]
    hub.update_twin("d1", {"properties": {"desired": {"a": 1}}}, if_match=f'"{etag}"')
    with pytest.raises(PreconditionFailed):
        hub.update_twin("d1", {"properties": {"desired": {"a": 2}}}, if_match=f'"{etag}"')
    hub.update_twin("d1", {"properties": {"desired": {"a": 3}}}, if_match="*")
    assert hub.device_twin("d1")["desired"]["a"] == 3


def test_echoed_version_and_metadata_are_ignored_but_other_dollar_keys_refused(hub):
    twin = hub.get_twin("d1")
    desired = dict(twin["properties"]["desired"], a=1)
    hub.update_twin("d1", {"properties": {"desired": desired}})
    assert hub.device_twin("d1")["desired"] == {"a": 1, "$version": 2}
    with pytest.raises(ArgumentInvalid):
        hub.patch_desired("d1", {"$bad": 1})
    with pytest.raises(ArgumentInvalid):
        hub.report_properties("d1", {"a.b": 1})
    with pytest.raises(ArgumentInvalid):
        hub.report_properties("d1", ["not", "an", "object"])
    assert hub.device_twin("d1")["reported"]["$version"] == 1  # refused patches change nothing


def test_replace_twin_keeps_reported_and_pushes_the_difference(hub):
    connections = RecordingConnections()
    hub.attach_connections(connections)
    hub.device_connected("d1")
    hub.patch_desired("d1", {"keep": 1, "drop": 2})
    hub.report_properties("d1", {"r": 1})
    connections.desired.clear()
    hub.replace_twin("d1", {"tags": {"t": 1}, "properties": {"desired": {"keep": 1, "new": 3}}})
    assert connections.desired == [("d1", {"drop": None, "new": 3, "$version": 3})]
    assert hub.device_twin("d1") == {"desired": {"keep": 1, "new": 3, "$version": 3},
                                    "reported": {"r": 1, "$version": 2}}
    assert hub.get_twin("d1")["tags"] == {"t": 1}


def test_twin_documents_list_every_device(hub):
    hub.create_device("d2")
    hub.update_twin("d2", {"tags": {"floor": 2}})
    docs = {d["deviceId"]: d for d in hub.twin_documents()}
    assert set(docs) == {"d1", "d2"}
    assert docs["d2"]["tags"] == {"floor": 2}
    assert docs["d1"]["properties"]["reported"]["$version"] == 1


def test_disabling_or_deleting_an_online_device_disconnects_it(hub):
    connections = RecordingConnections()
    hub.attach_connections(connections)
    hub.device_connected("d1")
    hub.update_device("d1", status="disabled")
    assert connections.disconnected == ["d1"] and not hub.is_online("d1")
    hub.update_device("d1", status="enabled")
    hub.device_connected("d1")
    hub.delete_device("d1")
    assert connections.disconnected == ["d1", "d1"]


@pytest.mark.parametrize("patch", [
    {"tags": {"site": "paris"}, "properties": {"desired": {"bad.key": 1}}},  # invalid desired name
    {"tags": {"site": "paris"}, "properties": {"desired": []}},  # desired not an object
    {"tags": {"site": "paris"}, "properties": {"desired": {"big": "x" * (33 * 1024)}}},  # desired too large
    {"tags": {"bad key": 1}, "properties": {"desired": {"ok": 1}}},  # invalid tag name
])
def test_refused_twin_patch_changes_nothing(hub, patch):
    connections = RecordingConnections()
    hub.attach_connections(connections)
    hub.device_connected("d1")
    before = hub.get_twin("d1")
    with pytest.raises(HubError) as info:
        hub.update_twin("d1", patch)
    assert info.value.http_status in (400, 413)
    assert hub.get_twin("d1") == before  # tags, desired, version and etag all as they were
    assert connections.desired == []


def test_refused_twin_replace_changes_nothing(hub):
    hub.update_twin("d1", {"tags": {"site": "lyon"}})
    before = hub.get_twin("d1")
    with pytest.raises(ArgumentInvalid):
        hub.replace_twin("d1", {"tags": {"site": "paris"}, "properties": {"desired": {"a.b": 1}}})
    assert hub.get_twin("d1") == before
