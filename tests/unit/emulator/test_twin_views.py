"""Queries over the hub's read-only twin documents: indexes kept right through changes, rows that
stay as returned, registration order, and scans that let other tasks run."""

import asyncio

import pytest

from emulator.hub import FakeClock, Hub
from emulator.hub import slices
from emulator.hub.query import parse_query


@pytest.fixture
def hub():
    hub = Hub("localhost", clock=FakeClock(1_700_000_000))
    for index, site in enumerate(["a", "b", "a", "c", "a"]):
        hub.create_device(f"d{index}")
        hub.update_twin(f"d{index}", {"tags": {"site": site, "n": index}})
    return hub


async def ids(hub: Hub, text: str) -> list[str]:
    return [row["deviceId"] for row in await hub.query(parse_query(text))]


async def test_an_indexed_field_follows_tag_changes_and_deletes(hub):
    assert await ids(hub, "SELECT * FROM devices WHERE tags.site = 'a'") == ["d0", "d2", "d4"]  # builds the index
    hub.update_twin("d1", {"tags": {"site": "a"}})
    hub.update_twin("d2", {"tags": {"site": "b"}})
    hub.delete_device("d4")
    assert await ids(hub, "SELECT * FROM devices WHERE tags.site = 'a'") == ["d0", "d1"]
    assert await ids(hub, "SELECT * FROM devices WHERE tags.site IN ['b', 'c'] AND tags.n > 1") == ["d2", "d3"]


async def test_index_hits_come_in_registration_order_and_a_recreated_device_comes_last(hub):
    await ids(hub, "SELECT * FROM devices WHERE tags.site = 'a'")
    hub.delete_device("d0")
    hub.create_device("d0")
    hub.update_twin("d0", {"tags": {"site": "a"}})
    assert await ids(hub, "SELECT * FROM devices WHERE tags.site = 'a'") == ["d2", "d4", "d0"]
    assert [d["deviceId"] for d in hub.twin_documents()] == ["d1", "d2", "d3", "d4", "d0"]


async def test_equality_keeps_json_kinds_apart(hub):
    hub.update_twin("d0", {"tags": {"flag": True}})
    hub.update_twin("d1", {"tags": {"flag": 1}})
    hub.update_twin("d2", {"tags": {"flag": 1.0}})
    hub.update_twin("d3", {"tags": {"flag": "1"}})
    for _ in range(2):  # the first query builds the index, the second reads it
        assert await ids(hub, "SELECT * FROM devices WHERE tags.flag = 1") == ["d1", "d2"]
        assert await ids(hub, "SELECT * FROM devices WHERE tags.flag = true") == ["d0"]
        assert await ids(hub, "SELECT * FROM devices WHERE tags.flag = '1'") == ["d3"]


async def test_device_id_lookups_need_no_scan(hub):
    assert await ids(hub, "SELECT * FROM devices WHERE DeviceId IN ['d3', 'd1', 'nobody']") == ["d1", "d3"]
    assert await ids(hub, "SELECT * FROM devices WHERE deviceId = 'd2' AND tags.site = 'a'") == ["d2"]
    assert await ids(hub, "SELECT * FROM devices WHERE deviceId = 'd2' AND tags.site = 'b'") == []


async def test_rows_already_returned_do_not_change_with_the_twin(hub):
    rows = await hub.query(parse_query("SELECT * FROM devices WHERE deviceId = 'd0'"))
    hub.update_twin("d0", {"tags": {"site": "z"}})
    hub.report_properties("d0", {"fw": "2.0"})
    assert rows[0]["tags"]["site"] == "a"
    assert "fw" not in rows[0]["properties"]["reported"]
    assert (await hub.query(parse_query("SELECT * FROM devices WHERE deviceId = 'd0'")))[0]["tags"]["site"] == "z"


async def test_device_activity_shows_in_the_documents(hub):
    before = hub.twin_documents()[0]["lastActivityTime"]
    hub.device_connected("d0")
    hub._clock.advance(5)
    hub.receive_telemetry("d0", b"{}")
    after = (await hub.query(parse_query("SELECT * FROM devices WHERE deviceId = 'd0'")))[0]
    assert after["lastActivityTime"] != before
    assert after["connectionState"] == "Connected"
    assert after["lastActivityTime"] == hub.get_device("d0").last_activity_time


async def test_a_scan_lets_other_tasks_run_and_an_index_built_meanwhile_stays_right(hub, monkeypatch):
    monkeypatch.setattr(slices, "SLICE_SECONDS", 0.0)  # yield after every document
    query_finished = []  # what the other task saw when it ran

    async def meanwhile():
        query_finished.append(bool(first))
        hub.update_twin("d1", {"tags": {"site": "a"}})  # changes while the index is being built
        hub.delete_device("d2")

    hub.twin_documents()  # every document up to date: the query goes straight to its scan
    first: list[str] = []
    other = asyncio.ensure_future(meanwhile())
    first.extend(await ids(hub, "SELECT * FROM devices WHERE tags.site = 'a'"))
    await other
    assert query_finished == [False]  # it ran while the query was scanning
    assert first == ["d0", "d2", "d4"]  # the scan read the documents as they were when it began
    assert await ids(hub, "SELECT * FROM devices WHERE tags.site = 'a'") == ["d0", "d1", "d4"]


async def test_an_index_on_a_field_whose_values_are_mostly_unique(hub):
    assert await ids(hub, "SELECT * FROM devices WHERE tags.n = 1") == ["d1"]  # builds the index
    hub.update_twin("d1", {"tags": {"n": 0}})  # now shared with d0
    assert await ids(hub, "SELECT * FROM devices WHERE tags.n = 0") == ["d0", "d1"]
    assert await ids(hub, "SELECT * FROM devices WHERE tags.n = 1") == []
    hub.delete_device("d0")
    assert await ids(hub, "SELECT * FROM devices WHERE tags.n IN [0, 1, 3]") == ["d1", "d3"]
    hub.update_twin("d1", {"tags": {"n": None}})
    assert await ids(hub, "SELECT * FROM devices WHERE tags.n = 0") == []


async def test_connecting_and_disconnecting_show_in_the_documents(hub):
    assert await ids(hub, "SELECT * FROM devices WHERE connectionState = 'Connected'") == []  # builds the index
    hub.device_connected("d1", model_id="dtmi:com:example:Lamp;1")
    hub.device_connected("d3")
    assert await ids(hub, "SELECT * FROM devices WHERE connectionState = 'Connected'") == ["d1", "d3"]
    row, = await hub.query(parse_query("SELECT * FROM devices WHERE deviceId = 'd1'"))
    assert (row["modelId"], row["lastActivityTime"]) == ("dtmi:com:example:Lamp;1", hub.get_device("d1").last_activity_time)
    hub.device_disconnected("d1")
    assert await ids(hub, "SELECT * FROM devices WHERE connectionState = 'Connected'") == ["d3"]
    assert await ids(hub, "SELECT * FROM devices WHERE connectionState = 'Disconnected' AND tags.site = 'a'") == ["d0", "d2", "d4"]
