"""The device registry: IoT Hub's id rules, keys, status, etags and If-Match."""

import pytest

from emulator.hub import (ArgumentInvalid, DeviceAlreadyExists, DeviceNotFound, FakeClock, Hub,
                          PreconditionFailed)
from emulator.hub.registry import validate_device_id
from emulator.rest.errors import error_body

KEY = "8cc0Q0uyQZXpjwRZmcbS7ylk+eo0FLauFovl2gd1Vbc="


@pytest.fixture
def hub():
    return Hub("localhost", clock=FakeClock())


@pytest.mark.parametrize("device_id", ["a", "A-1:b.c+d%e_f#g*h?i!j(k)l,m=n@o$p'q", "x" * 128])
def test_valid_device_ids(device_id):
    assert validate_device_id(device_id) == device_id


@pytest.mark.parametrize("device_id", ["", "x" * 129, "has space", "slash/id", "é", "semi;colon"])
def test_invalid_device_ids_are_refused(hub, device_id):
    with pytest.raises(ArgumentInvalid) as info:
        hub.create_device(device_id)
    assert info.value.http_status == 400


def test_create_generates_distinct_base64_keys_and_starts_disconnected(hub):
    device = hub.create_device("d1")
    assert device.primary_key != device.secondary_key
    assert len(device.primary_key) == 44
    assert device.status == "enabled"
    doc = device.to_json()
    assert doc["connectionState"] == "Disconnected"
    assert doc["lastActivityTime"] == "0001-01-01T00:00:00Z"
    assert doc["authentication"]["type"] == "sas"


def test_given_keys_are_kept_and_bad_keys_refused(hub):
    assert hub.create_device("d1", primary_key=KEY).primary_key == KEY
    with pytest.raises(ArgumentInvalid):
        hub.create_device("d2", primary_key="not base64!")


def test_duplicate_and_missing_devices(hub):
    hub.create_device("d1")
    with pytest.raises(DeviceAlreadyExists) as exists:
        hub.create_device("d1")
    assert (exists.value.error_code, exists.value.http_status) == (409001, 409)
    with pytest.raises(DeviceNotFound) as missing:
        hub.get_device("nope")
    assert (missing.value.error_code, missing.value.http_status) == (404001, 404)
    assert "DeviceNotFound" in error_body(missing.value)["Message"]


def test_update_changes_etag_and_honours_if_match(hub):
    device = hub.create_device("d1")
    old_etag = device.etag
    hub.update_device("d1", status="disabled", if_match=f'"{old_etag}"')
    assert hub.get_device("d1").status == "disabled"
    assert hub.get_device("d1").etag != old_etag
    with pytest.raises(PreconditionFailed) as info:
        hub.update_device("d1", status="enabled", if_match=old_etag)
    assert info.value.http_status == 412
    hub.update_device("d1", status="enabled", if_match="*")
    assert hub.get_device("d1").enabled


def test_delete_with_stale_etag_fails_then_succeeds(hub):
    device = hub.create_device("d1")
    hub.update_device("d1", status="disabled")
    with pytest.raises(PreconditionFailed):
        hub.delete_device("d1", if_match='"MQ=="')
    hub.delete_device("d1", if_match='"*"')
    with pytest.raises(DeviceNotFound):
        hub.get_twin("d1")
    assert device.device_id not in [d.device_id for d in hub.list_devices()]


def test_connection_state_and_last_activity_follow_the_clock():
    clock = FakeClock(1_700_000_000)
    hub = Hub(clock=clock)
    hub.create_device("d1")
    etag = hub.get_device("d1").etag
    clock.advance(10)
    hub.device_connected("d1")
    device = hub.get_device("d1")
    assert device.connection_state == "Connected"
    assert device.last_activity_time == "2023-11-14T22:13:30.000000Z"
    assert device.etag == etag  # connection state is not a registry write
    hub.device_disconnected("d1")
    assert hub.get_device("d1").connection_state == "Disconnected"


def test_last_activity_follows_messages_to_the_second():
    clock = FakeClock(1_700_000_000)
    hub = Hub(clock=clock)
    hub.create_device("d1")
    hub.device_connected("d1")
    connected_at = hub.get_device("d1").last_activity_time
    clock.advance(0.4)
    hub.receive_telemetry("d1", b"{}")
    assert hub.get_device("d1").last_activity_time == connected_at  # within the second: unchanged
    clock.advance(0.6)
    hub.receive_telemetry("d1", b"{}")
    assert hub.get_device("d1").last_activity_time == "2023-11-14T22:13:21.000000Z"
    [row] = hub.twin_documents()
    assert row["lastActivityTime"] == "2023-11-14T22:13:21.000000Z"  # queries see it too


def test_well_known_credentials_are_registered():
    hub = Hub()
    hub.register_well_known()
    from hubsettings import wellknown
    assert hub.get_device(wellknown.DEVICE_ID).primary_key == wellknown.DEVICE_KEY
    assert set(hub.policies) >= {"iothubowner", "service", "registryReadWrite"}
    assert wellknown.DPS_GROUP_ENROLLMENT in hub.provisioning.groups


@pytest.mark.parametrize("fields", [
    {"primary_key": KEY, "secondary_key": "not base64!"},
    {"primary_key": "not base64!", "secondary_key": KEY},
    {"primary_key": KEY, "status": "sleeping"},
])
def test_refused_device_update_changes_nothing(hub, fields):
    device = hub.create_device("d1")
    before = device.to_json()
    with pytest.raises(ArgumentInvalid):
        hub.update_device("d1", status_reason="maintenance", **fields)
    assert hub.get_device("d1").to_json() == before  # keys, reason and etag as they were


def test_create_with_a_status_reason_is_one_write(hub):
    device = hub.create_device("d1", status="disabled", status_reason="not yet installed")
    assert (device.status, device.status_reason, device.etag_counter) == ("disabled", "not yet installed", 1)


def test_bulk_create_registers_devices_with_their_tags(hub):
    from emulator.hub import NewDevice
    created = hub.create_devices([NewDevice("b1", primary_key=KEY, tags={"site": "a"}), NewDevice("b2")])
    assert [d.device_id for d in created] == ["b1", "b2"]
    assert hub.get_device("b1").primary_key == KEY
    assert hub.get_twin("b1")["tags"] == {"site": "a"}
    assert hub.get_twin("b2")["tags"] == {}
    assert [d["deviceId"] for d in hub.twin_documents()] == ["b1", "b2"]


@pytest.mark.parametrize("bad", [
    {"device_id": "b1"},  # twice in one request
    {"device_id": "has space"},
    {"device_id": "x1", "primary_key": "not base64!"},
    {"device_id": "x1", "tags": {"a.b": 1}},
    {"device_id": "existing"},
])
def test_bulk_create_is_all_or_nothing(hub, bad):
    from emulator.hub import NewDevice
    hub.create_device("existing")
    with pytest.raises((ArgumentInvalid, DeviceAlreadyExists)):
        hub.create_devices([NewDevice("b1"), NewDevice(**bad), NewDevice("b3")])
    assert [d.device_id for d in hub.list_devices()] == ["existing"]


def test_a_device_record_is_a_flat_copy_of_every_field(hub):
    import dataclasses
    device = hub.create_device("d1", status_reason="why")
    record = device.to_record()
    assert record == dataclasses.asdict(device)  # every field, and only scalars: nothing shared to change
    record["status"] = "disabled"
    assert device.status == "enabled"
