"""SQLite persistence: what a restart must keep (registry, twins, versions, enrollments)."""

import sqlite3

import pytest

from emulator.hub import FakeClock, Hub
from emulator.hub.provisioning import IndividualEnrollment
from emulator.store import DATABASE_FILE, SqliteStore, StoreError

KEY = "8cc0Q0uyQZXpjwRZmcbS7ylk+eo0FLauFovl2gd1Vbc="


def open_hub(data_dir, clock=None):
    return Hub("localhost", store=SqliteStore.in_directory(data_dir), clock=clock or FakeClock())


def test_records_round_trip_and_delete(tmp_path):
    store = SqliteStore.in_directory(tmp_path)
    store.put("device", "a", {"x": 1})
    store.put("device", "a", {"x": 2})
    store.put("device", "b", {"x": 3})
    store.put("twin", "a", {"y": 1})
    store.delete("device", "b")
    store.close()
    store = SqliteStore.in_directory(tmp_path)
    assert store.load("device") == [{"x": 2}]
    assert store.load("twin") == [{"y": 1}]


def test_restart_keeps_registry_twins_and_versions(tmp_path):
    hub = open_hub(tmp_path)
    hub.create_device("d1", primary_key=KEY)
    hub.create_device("gone")
    hub.update_device("d1", status="disabled")
    hub.update_twin("d1", {"tags": {"site": "A"}, "properties": {"desired": {"t": 21}}})
    hub.report_properties("d1", {"fw": "1.0"})
    hub.device_connected("d1")
    hub.delete_device("gone")
    hub.add_enrollment(IndividualEnrollment("reg-1", KEY))
    before_twin, before_device = hub.get_twin("d1"), hub.get_device("d1").to_json()
    hub.close()

    hub = open_hub(tmp_path)
    twin, device = hub.get_twin("d1"), hub.get_device("d1").to_json()
    assert twin["properties"] == before_twin["properties"]
    assert (twin["tags"], twin["version"], twin["etag"]) == (before_twin["tags"], before_twin["version"],
                                                              before_twin["etag"])
    assert device["etag"] == before_device["etag"] and device["status"] == "disabled"
    assert device["authentication"]["symmetricKey"]["primaryKey"] == KEY
    assert device["connectionState"] == "Disconnected"  # nobody is connected after a restart
    assert "gone" not in hub.registry
    assert "reg-1" in hub.provisioning.individuals


def test_versions_keep_going_up_after_a_restart(tmp_path):
    hub = open_hub(tmp_path)
    hub.create_device("d1")
    hub.patch_desired("d1", {"a": 1})
    hub.close()
    hub = open_hub(tmp_path)
    assert hub.device_twin("d1")["desired"] == {"a": 1, "$version": 2}  # same doc: no spurious patch
    hub.patch_desired("d1", {"a": 2})
    assert hub.device_twin("d1")["desired"]["$version"] == 3


def test_in_memory_store_keeps_nothing(tmp_path):
    hub = Hub(store=SqliteStore.in_memory())
    hub.create_device("d1")
    hub.close()
    assert "d1" not in Hub(store=SqliteStore.in_memory()).registry


def test_database_from_a_newer_version_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / DATABASE_FILE)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        SqliteStore.in_directory(tmp_path)


def test_unusable_path_is_a_store_error(tmp_path):
    (tmp_path / DATABASE_FILE).mkdir()
    with pytest.raises(StoreError):
        SqliteStore.in_directory(tmp_path)


def test_job_snapshots_survive_a_restart(tmp_path):
    hub = open_hub(tmp_path)
    hub.save_job({"job": {"jobId": "j1", "status": "scheduled"}, "devices": []})
    hub.save_job({"job": {"jobId": "j1", "status": "running"}, "devices": []})
    hub.close()
    assert open_hub(tmp_path).saved_jobs() == [{"job": {"jobId": "j1", "status": "running"}, "devices": [],
                                                "selected": []}]


def test_a_data_directory_serves_one_emulator_at_a_time(tmp_path):
    first = SqliteStore.in_directory(tmp_path)
    with pytest.raises(StoreError, match="in use by another running emulator"):
        SqliteStore.in_directory(tmp_path)
    first.close()
    SqliteStore.in_directory(tmp_path).close()


def test_bulk_registration_is_saved_and_survives_a_restart(tmp_path):
    from emulator.hub import NewDevice
    hub = open_hub(tmp_path)
    hub.create_devices([NewDevice(f"b{i}", primary_key=KEY, tags={"i": i}) for i in range(3)])
    hub.close()
    hub = open_hub(tmp_path)
    assert [d.device_id for d in hub.list_devices()] == ["b0", "b1", "b2"]
    assert hub.get_twin("b2")["tags"] == {"i": 2}
    hub.close()


def test_put_many_keeps_all_or_none(tmp_path):
    store = SqliteStore.in_directory(tmp_path)
    store.put_many("device", [("a", {"x": 1}), ("b", {"x": 2})])
    with pytest.raises(TypeError):
        store.put_many("device", [("c", {"x": 3}), ("d", {"x": object()})])  # not JSON: nothing kept
    assert store.load("device") == [{"x": 1}, {"x": 2}]
    store.close()


async def test_job_rows_are_merged_by_device_and_restored_whole(tmp_path):
    from emulator.hub.jobs_state import DeviceJob, Job
    from emulator.hub.jobs_request import parse_job_request
    spec = parse_job_request({"jobId": "j", "type": "scheduleUpdateTwin", "queryCondition": "tags.a = 1",
                              "updateTwin": {"tags": {"b": 2}}}, now=0.0)
    job = Job(spec=spec, created=0.0, status="running", started_at=0.0)
    hub = open_hub(tmp_path)
    for device_id in ("d1", "d2"):
        job.add_device(DeviceJob(device_id, "j", spec.type, created=0.0, start=0.0))
    selection = job.changes()
    assert selection["devices"] == [] and selection["selected"] == ["d1", "d2"]  # pending: ids, not rows
    hub.save_job(selection)
    job.finish_device(job.devices["d2"], "completed", 5.0, outcome={"deviceMethodResponse": None})
    changes = job.changes()
    assert [row["deviceId"] for row in changes["devices"]] == ["d2"]
    hub.save_job(changes)
    hub.close()
    hub = open_hub(tmp_path)
    saved, = hub.saved_jobs()  # the reopened hub restored the job: interrupted mid-run, so it failed
    assert {row["deviceId"]: row["status"] for row in saved["devices"]} == {"d1": "failed", "d2": "completed"}
    assert hub.jobs.get("j")["deviceJobStatistics"]["succeededCount"] == 1
    hub.close()


def test_a_job_saved_whole_by_an_earlier_version_is_still_restored(tmp_path):
    from emulator.store import JOBS
    store = SqliteStore.in_directory(tmp_path)
    store.put(JOBS, "old", {"job": {"jobId": "old", "status": "completed"}, "startedAt": 1.0,
                            "devices": [{"deviceId": "d1", "jobId": "old", "status": "completed"}]})
    store.close()
    for _ in range(2):  # the second time from the rows the first one split off
        hub = open_hub(tmp_path)
        saved, = hub.saved_jobs()
        assert saved["devices"] == [{"deviceId": "d1", "jobId": "old", "status": "completed"}]
        hub.close()
