"""WHERE semantics: every operator, three-valued logic, case-insensitivity, over FLEET."""

from __future__ import annotations

import pytest

from emulator.hub.query import UNDEFINED, execute, parse_condition, parse_query

from .fleet import FLEET, JOB_RECORDS


def ids(where: str) -> list[str]:
    rows = execute(parse_query(f"SELECT * FROM devices WHERE {where}"), FLEET)
    return [row["deviceId"] for row in rows]


ALL = ["thermostat-1", "thermostat-2", "door-1", "door-2", "sensor-1"]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        # equality and inequality, both spellings
        ("deviceId = 'door-1'", ["door-1"]),
        ('deviceId = "door-1"', ["door-1"]),
        ("deviceId != 'door-1'", ["thermostat-1", "thermostat-2", "door-2", "sensor-1"]),
        ("deviceId <> 'door-1'", ["thermostat-1", "thermostat-2", "door-2", "sensor-1"]),
        ("'door-1' = deviceId", ["door-1"]),
        # ordering on numbers (int and float compare together) and on strings
        ("properties.reported.temperature > 22", ["thermostat-2"]),
        ("properties.reported.temperature >= 21.5", ["thermostat-1", "thermostat-2"]),
        ("properties.reported.temperature < 25", ["thermostat-1"]),
        ("properties.reported.temperature <= 25", ["thermostat-1", "thermostat-2"]),
        ("properties.reported.firmware < '1.1'", ["thermostat-1", "door-1"]),
        ("lastActivityTime > '2026-11-01'", ALL),
        ("lastActivityTime > '2026-12-01'", []),
        # different types never compare: number vs string, string vs number, null vs number
        ("properties.reported.temperature = 'hot'", ["sensor-1"]),
        ("properties.reported.temperature > 'a'", ["sensor-1"]),
        ("tags.floor = 1", ["thermostat-1"]),
        ("tags.floor = '1'", []),
        ("tags.floor > 0", ["thermostat-1", "thermostat-2"]),
        ("NOT (tags.floor = 1)", ["thermostat-2"]),  # 'ground' and missing floors stay undefined
        # booleans and null
        ("properties.reported.isOn = true", ["thermostat-1"]),
        ("properties.reported.isOn = FALSE", ["thermostat-2"]),
        ("properties.reported.isOn", ["thermostat-1"]),
        ("NOT properties.reported.isOn", ["thermostat-2"]),
        ("properties.reported.temperature = null", ["door-1"]),
        ("properties.reported.temperature != null", []),  # cross-type: undefined, not true
        # AND / OR / NOT and parentheses, precedence AND over OR
        ("tags.location.region = 'US' AND properties.reported.firmware = '1.0.0'", ["thermostat-1", "door-1"]),
        ("tags.location.region = 'EU' OR status = 'disabled'", ["thermostat-2", "door-2"]),
        ("status = 'disabled' OR tags.location.region = 'US' AND tags.floor = 1", ["thermostat-1", "door-2"]),
        ("(status = 'disabled' OR tags.location.region = 'US') AND tags.floor = 1", ["thermostat-1"]),
        ("NOT (tags.location.region = 'US')", ["thermostat-2", "door-2"]),
        ("NOT NOT (deviceId = 'door-2')", ["door-2"]),
        ("tags.missing = 1 OR deviceId = 'door-2'", ["door-2"]),  # undefined OR true -> true
        ("NOT (tags.missing = 1 AND deviceId = 'nope')", ALL),  # undefined AND false -> false
        ("NOT (tags.missing = 1 AND status = 'enabled')", ["door-2"]),  # undefined AND true -> undefined
        ("NOT (tags.missing = 1 OR status = 'enabled')", []),  # undefined OR false -> undefined
        # IN / NIN with brackets or parentheses, mixed literal types
        ("deviceId IN ['door-1', 'door-2']", ["door-1", "door-2"]),
        ("deviceId in ('door-1')", ["door-1"]),
        ("tags.floor IN [1, 'ground']", ["thermostat-1", "door-1"]),
        ("tags.floor NIN [1, 'ground']", ["thermostat-2"]),
        ("tags.location.region NIN ['US']", ["thermostat-2", "door-2"]),
        ("deviceId IN []", []),
        # functions
        ("IS_DEFINED(tags.location)", ["thermostat-1", "thermostat-2", "door-1", "door-2"]),
        ("NOT IS_DEFINED(tags)", ["sensor-1"]),
        ("NOT IS_DEFINED(tags.location.plant)", ["door-2", "sensor-1"]),
        ("IS_NULL(properties.reported.temperature)", ["door-1"]),
        ("NOT IS_NULL(properties.reported.temperature)", ["thermostat-1", "thermostat-2", "sensor-1"]),
        ("STARTSWITH(deviceId, 'door')", ["door-1", "door-2"]),
        ("starts_with(deviceId, 'therm')", ["thermostat-1", "thermostat-2"]),
        ("ENDSWITH(deviceId, '-1')", ["thermostat-1", "door-1", "sensor-1"]),
        ("ENDSWITH(tags.floor, '1')", []),  # not a string: undefined
        ("NOT STARTSWITH(tags.location.plant, 'Red')", ["thermostat-2"]),
        # $-prefixed twin metadata and devices. prefixes
        ("properties.desired.$version = 1", ALL),
        ("devices.tags.location.region = 'APAC'", ["door-2"]),
        ("devices.deviceId = 'sensor-1'", ["sensor-1"]),
        # field names and keywords in any case, as the tutorial writes them
        ("DeviceId in ['door-1']", ["door-1"]),
        ("TAGS.Location.REGION = 'EU'", ["thermostat-2"]),
        ("Properties.Reported.isON = True", ["thermostat-1"]),
        ("deviceid = 'door-1' and NOT is_defined(tags.nothing)", ["door-1"]),
        # string escapes
        ("deviceId = 'door\\u002d1'", ["door-1"]),
        ("deviceId = 'it\\'s'", []),
    ],
)
def test_where_selects_the_expected_devices(where: str, expected: list[str]) -> None:
    assert ids(where) == expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("tags.location.region = 'US'", ["thermostat-1", "door-1"]),
        ("deviceId IN ['thermostat-2', 'sensor-1']", ["thermostat-2", "sensor-1"]),
        ("connectionState = 'Connected'\n  AND properties.reported.firmware != '1.1.0'", ["thermostat-1"]),
    ],
)
def test_a_job_condition_alone_matches_twins(condition: str, expected: list[str]) -> None:
    parsed = parse_condition(condition)
    assert [t["deviceId"] for t in FLEET if parsed.matches(t)] == expected


def test_undefined_is_neither_true_nor_false() -> None:
    condition = parse_condition("tags.missing = 1")
    assert condition.evaluate(FLEET[0]) is UNDEFINED
    assert condition.matches(FLEET[0]) is False
    assert parse_condition("NOT (tags.missing = 1)").matches(FLEET[0]) is False


def test_field_names_prefer_the_exact_case_when_both_exist() -> None:
    documents = [{"deviceId": "x", "tags": {"mode": "lower", "Mode": "upper"}}]
    query = parse_query("SELECT * FROM devices WHERE tags.Mode = 'upper'")
    assert len(execute(query, documents)) == 1
    query = parse_query("SELECT * FROM devices WHERE tags.MODE = 'lower'")
    assert len(execute(query, documents)) == 1  # first case-insensitive match in document order


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("devices.jobs.jobId = 'reboot-1'", [("thermostat-1", "reboot-1"), ("door-1", "reboot-1")]),
        ("devices.jobs.deviceId = 'thermostat-1' AND devices.jobs.jobType = 'scheduleUpdateTwin'",
         [("thermostat-1", "twin-1")]),
        ("status = 'failed' AND error.code = 'DeviceNotOnline'", [("door-1", "reboot-1")]),
        ("devices.jobs.outcome.deviceMethodResponse.status = 200", [("thermostat-1", "reboot-1")]),
        ("devices.jobs.createdDateTimeUtc > '2026-11-21'", [("thermostat-1", "twin-1")]),
    ],
)
def test_device_job_queries(where: str, expected: list[tuple[str, str]]) -> None:
    query = parse_query(f"SELECT * FROM devices.jobs WHERE {where}")
    assert query.source == "devices.jobs"
    assert [(r["deviceId"], r["jobId"]) for r in execute(query, JOB_RECORDS)] == expected
