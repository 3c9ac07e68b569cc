"""SELECT lists, TOP, COUNT() and GROUP BY over FLEET."""

from __future__ import annotations

import pytest

from emulator.hub.query import execute, parse_query

from .fleet import FLEET, JOB_RECORDS


def run(text: str, documents: list[dict] = FLEET) -> list[dict]:
    return execute(parse_query(text), documents)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SELECT deviceId FROM devices WHERE STARTSWITH(deviceId, 'door')",
         [{"deviceId": "door-1"}, {"deviceId": "door-2"}]),
        # the output key is the document's own spelling, whatever the query's case
        ("SELECT DeviceID, Status FROM devices WHERE deviceId = 'door-2'",
         [{"deviceId": "door-2", "status": "disabled"}]),
        ("SELECT deviceId AS id, tags.location.region AS region FROM devices WHERE tags.floor = 1",
         [{"id": "thermostat-1", "region": "US"}]),
        # nested paths are named after their last segment; missing values are left out
        ("SELECT deviceId, tags.location.plant FROM devices WHERE STARTSWITH(deviceId, 'door')",
         [{"deviceId": "door-1", "plant": "Redmond43"}, {"deviceId": "door-2"}]),
        ("SELECT properties.reported.firmware AS fw FROM devices WHERE deviceId = 'sensor-1'", [{}]),
        ("SELECT tags.location FROM devices WHERE deviceId = 'door-2'", [{"location": {"region": "APAC"}}]),
        ("SELECT devices.deviceId FROM devices WHERE deviceId = 'door-2'", [{"deviceId": "door-2"}]),
        ("SELECT deviceId, 'x' FROM devices WHERE deviceId = 'door-2'", [{"deviceId": "door-2", "$2": "x"}]),
    ],
)
def test_projections(text: str, expected: list[dict]) -> None:
    assert run(text) == expected


def test_select_star_returns_the_documents_themselves_not_copies() -> None:
    # Queries copy nothing: the rows are the (read-only) documents, serialised by the REST front.
    rows = run("SELECT * FROM devices WHERE deviceId = 'thermostat-1'")
    assert rows == [FLEET[0]]
    assert rows[0] is FLEET[0]


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("SELECT TOP 2 * FROM devices", 2),
        ("SELECT TOP 0 * FROM devices", 0),
        ("SELECT TOP 100 deviceId FROM devices", 5),
        ("select top 1 deviceId from devices where status = 'enabled'", 1),
    ],
)
def test_top_limits_rows(text: str, count: int) -> None:
    assert len(run(text)) == count
    assert parse_query(text).top is not None


def test_top_keeps_the_first_matching_rows() -> None:
    assert run("SELECT TOP 2 deviceId FROM devices WHERE STARTSWITH(deviceId, 'door') OR deviceId = 'sensor-1'") == [
        {"deviceId": "door-1"}, {"deviceId": "door-2"}]
    assert parse_query("SELECT * FROM devices").top is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SELECT COUNT() AS total FROM devices", [{"total": 5}]),
        ("SELECT COUNT() AS n FROM devices WHERE tags.location.region = 'US'", [{"n": 2}]),
        ("SELECT COUNT() AS n FROM devices WHERE deviceId = 'nobody'", [{"n": 0}]),
        ("SELECT count() FROM devices", [{"$1": 5}]),
        ("SELECT COUNT() AS a, COUNT() AS b FROM devices", [{"a": 5, "b": 5}]),
    ],
)
def test_count_without_group_by(text: str, expected: list[dict]) -> None:
    assert run(text) == expected


def test_group_by_counts_each_value_in_first_seen_order() -> None:
    rows = run(
        "SELECT properties.reported.firmware AS firmware, COUNT() AS numberOfDevices "
        "FROM devices GROUP BY properties.reported.firmware"
    )
    assert rows == [
        {"firmware": "1.0.0", "numberOfDevices": 2},
        {"firmware": "1.1.0", "numberOfDevices": 1},
        {"firmware": "2.0.0", "numberOfDevices": 1},
        {"numberOfDevices": 1},  # sensor-1 has no firmware: its own group, key left out
    ]


def test_group_by_several_fields_with_where_and_top() -> None:
    rows = run(
        "SELECT TOP 2 tags.location.region, status, COUNT() AS n FROM devices "
        "WHERE IS_DEFINED(tags) GROUP BY tags.location.region, Status"
    )
    assert rows == [{"region": "US", "status": "enabled", "n": 2}, {"region": "EU", "status": "enabled", "n": 1}]


def test_group_by_keeps_numbers_and_strings_apart() -> None:
    rows = run("SELECT tags.floor AS floor, COUNT() AS n FROM devices WHERE IS_DEFINED(tags.floor) GROUP BY tags.floor")
    assert rows == [{"floor": 1, "n": 1}, {"floor": 2, "n": 1}, {"floor": "ground", "n": 1}]


def test_group_by_on_device_jobs() -> None:
    rows = run("SELECT devices.jobs.status, COUNT() AS n FROM devices.jobs GROUP BY devices.jobs.status", JOB_RECORDS)
    assert rows == [{"status": "completed", "n": 1}, {"status": "failed", "n": 1}, {"status": "running", "n": 1}]


@pytest.mark.parametrize("text", ["SELECT * FROM devices", "select * from DEVICES", "SELECT * FROM Devices.Jobs"])
def test_source_is_normalised(text: str) -> None:
    assert parse_query(text).source in ("devices", "devices.jobs")
    assert parse_query(text).source == text.split()[-1].lower()


def test_device_job_projection() -> None:
    rows = run(
        "SELECT devices.jobs.deviceId, outcome.deviceMethodResponse.status AS methodStatus "
        "FROM devices.jobs WHERE jobId = 'reboot-1'",
        JOB_RECORDS,
    )
    assert rows == [{"deviceId": "thermostat-1", "methodStatus": 200}, {"deviceId": "door-1"}]


@pytest.mark.parametrize(
    ("text", "item_type"),
    [
        ("SELECT * FROM devices", "twin"),
        ("SELECT * FROM devices.jobs", "deviceJob"),
        ("SELECT deviceId FROM devices", "raw"),
        ("SELECT COUNT() AS n FROM devices", "raw"),
    ],
)
def test_item_type_for_the_response_header(text: str, item_type: str) -> None:
    assert parse_query(text).item_type == item_type
