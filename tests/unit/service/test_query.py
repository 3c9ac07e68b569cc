from __future__ import annotations

import pytest

from .fakes import twin_json


@pytest.fixture
def three_pages(fake_hub):
    fake_hub.query_pages = [
        ([twin_json("d1"), twin_json("d2")], "1"),
        ([twin_json("d3"), twin_json("d4")], "2"),
        ([twin_json("d5")], None),
    ]


def test_query_follows_continuation_tokens(run, fake_hub, three_pages):
    data = run.json("query", "SELECT * FROM devices")
    assert [item["deviceId"] for item in data] == ["d1", "d2", "d3", "d4", "d5"]
    assert fake_hub.calls_to("query_iot_hub") == [
        ("SELECT * FROM devices", None, 100), ("SELECT * FROM devices", "1", 100),
        ("SELECT * FROM devices", "2", 100)]


def test_query_top_stops_early_and_asks_only_for_what_it_needs(run, fake_hub, three_pages):
    data = run.json("query", "SELECT * FROM devices", "--top", "3", "--page-size", "2")
    assert [item["deviceId"] for item in data] == ["d1", "d2", "d3"]
    assert [call[1:] for call in fake_hub.calls_to("query_iot_hub")] == [(None, 2), ("1", 1)]


def test_query_human_table(run, fake_hub):
    fake_hub.query_pages = [([{"deviceId": "d1", "rebootTime": "t1"}, {"deviceId": "d2", "lastReboot": 3}],
                             None)]
    result = run("query", "SELECT deviceId FROM devices")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "deviceId" in lines[0] and "rebootTime" in lines[0] and "lastReboot" in lines[0]
    assert any("d1" in line and "t1" in line for line in lines)
    assert lines[-1] == "2 items"


def test_query_keeps_fields_the_sdk_twin_model_lacks(run, fake_hub):
    """The SDK deserializes every item as Twin: projections and counts must survive."""
    fake_hub.query_pages = [([{"numberOfDevices": 7}], None)]
    assert run.json("query", "SELECT COUNT() AS numberOfDevices FROM devices") == [{"numberOfDevices": 7}]


def test_query_empty(run, fake_hub):
    result = run("query", "SELECT * FROM devices WHERE tags.x = 'none'")
    assert result.exit_code == 0 and result.stdout.strip() == "No results."
    assert run.json("query", "SELECT * FROM devices") == []


def test_query_must_be_a_select(run, fake_hub):
    result = run("query", "DELETE FROM devices")
    assert result.exit_code == 2 and fake_hub.calls == []


def test_query_repeated_token_is_an_error_not_a_loop(run, fake_hub):
    fake_hub.query_pages = [([twin_json("d1")], "1"), ([twin_json("d2")], "1")]
    result = run("query", "SELECT * FROM devices")
    assert result.exit_code == 1
    assert "same query continuation token twice" in result.stderr


def test_query_of_whole_twins_shows_their_useful_parts(run, fake_hub):
    fake_hub.query_pages = [([twin_json("d1", reported={"rebootState": "running"}, tags={"site": "paris"})], None)]
    lines = run("query", "SELECT * FROM devices").stdout.splitlines()
    assert lines[0].split() == ["deviceId", "status", "connectionState", "lastActivityTime", "tags", "desired",
                                "reported"]
    assert '{"rebootState": "running"}' in lines[2] and '{"site": "paris"}' in lines[2]
    assert "$metadata" not in "\n".join(lines)


def test_query_fields_come_in_select_order(run, fake_hub):
    """The SDK's Twin model keeps unknown fields in a set; the CLI restores the SELECT order (with 5
    fields, an order kept by chance would pass 1 run in 120)."""
    fake_hub.query_pages = [([{"e": 5, "deviceId": "d1", "c": 3, "a": 1, "b": 2, "d": 4}], None)]
    sql = "SELECT deviceId, properties.reported.e, tags.d, c, properties.desired.b AS b, a FROM devices"
    assert list(run.json("query", sql)[0]) == ["deviceId", "e", "d", "c", "b", "a"]
    header = run("query", sql).stdout.splitlines()[0].split()
    assert header == ["deviceId", "e", "d", "c", "b", "a"]


@pytest.mark.parametrize("sql,names", [
    ("SELECT * FROM devices", []),
    ("select top 5 deviceId, COUNT() as n from devices group by deviceId", ["deviceId", "n"]),
    ("SELECT deviceId, properties.reported.door.locked FROM devices.jobs", ["deviceId", "locked"]),
    ("SELECT 'a,b' AS text, deviceId FROM devices", ["text", "deviceId"]),
    ("not a query", []),
])
def test_select_list_names(sql, names):
    from service.hub import select_list_names
    assert select_list_names(sql) == names
