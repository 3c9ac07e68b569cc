"""Throttling: `iothub-emulator --throttle TIER` answers like an IoT hub of that tier past its limits
(429 ThrottlingException with Retry-After), a Basic tier refuses what Basic hubs lack (twins, direct
methods, jobs: 403 OperationNotAvailableInCurrentTier), and the service CLI backs off, retries, then
either succeeds or fails with one clear line and exit code 10. Each tier's exact figures are checked in
tests/unit/emulator/rest/test_throttle.py.

The emulator's throttle reads a clock the test moves (the CLI's sleep moves it, as real waiting would),
so nothing here waits for a bucket to refill.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests
from click.testing import CliRunner

from emulator.rest.app import ROUTES, THROTTLE_CLASSES
from emulator.rest.throttle import (JOBS, METER_BYTES, METHODS, QUERIES, TIERS, TWIN_READS, TWIN_UPDATES, Throttle,
                                    Throttled)
from emulator.testing import EmulatorProcess
from hubsettings import wellknown
from service.cli import cli
from service.context import AppState
from service.errors import ExitCode
from tests.e2e.conftest import PROJECT_ROOT

from .conftest import running, start_emulator, stop_emulator
from .support import concrete_path, route_bodies, service_token

S1_QUERIES_PER_MINUTE = 20


class TestClock:
    __test__ = False

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def throttle_clock() -> TestClock:
    return TestClock()


@pytest.fixture(scope="module")
def throttled(tmp_path_factory, throttle_clock):
    threaded, watch = start_emulator(tmp_path_factory.mktemp("throttled"), throttle="S1",
                                     throttle_clock=throttle_clock)
    try:
        yield running(threaded, watch)
    finally:
        stop_emulator(threaded, watch)
    assert not watch.problems, watch.describe()


@pytest.fixture
def exhausted_queries(throttled, throttle_clock):
    """The query allowance spent: a fresh minute, then S1's 20 queries."""
    throttle_clock.now += 3600
    rest = throttled.rest()
    for _ in range(S1_QUERIES_PER_MINUTE):
        assert rest.call("POST", "/devices/query", json_body={"query": "SELECT * FROM devices"}).status_code == 200
    return rest


def test_past_the_tier_limit_the_hub_answers_429_in_iot_hubs_shape(throttled, throttle_clock, exhausted_queries):
    response = exhausted_queries.call("POST", "/devices/query", json_body={"query": "SELECT * FROM devices"})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"  # S1 queries refill at 20/min
    assert response.headers["iothub-errorcode"] == "ThrottlingException"
    body = response.json()
    assert set(body) == {"Message", "ExceptionMessage"}
    assert body["Message"].startswith("ErrorCode:ThrottlingException;")
    # Other operation classes have their own allowance.
    assert exhausted_queries.call("GET", "/devices").status_code == 200
    # Refused and unauthorized requests spend nothing; after Retry-After the query goes through.
    bad_key = exhausted_queries.call("POST", "/devices/query", json_body={"query": "SELECT * FROM devices"},
                                     authorization="SharedAccessSignature sr=x&sig=y&se=1&skn=iothubowner")
    assert bad_key.status_code == 401
    throttle_clock.now += 3
    assert exhausted_queries.call("POST", "/devices/query",
                                  json_body={"query": "SELECT * FROM devices"}).status_code == 200


def test_direct_methods_are_metered_in_4_kb_units():
    clock = TestClock()
    limits = Throttle("S1", clock)  # 160 KB/s, a minute's worth of burst: 2,400 meters
    limits.take("direct methods", 2400 - 3)
    limits.take("direct methods", 3)  # exactly the rest
    with pytest.raises(Throttled) as refused:
        limits.take("direct methods", 1)
    assert refused.value.http_status == 429 and refused.value.retry_after == 1
    clock.now += 1  # 40 meters a second
    limits.take("direct methods", 40)
    assert METER_BYTES == 4096


def _service_cli(emulator, args: list[str], sleep) -> tuple[int, str]:
    state = AppState(connection_string=wellknown.service_connection_string(emulator.host_name, emulator.rest_port),
                     ca_file=emulator.ca_file, sleep=sleep)
    result = CliRunner().invoke(cli, args, obj=state)
    return result.exit_code, result.output


@pytest.fixture
def isolated_cli_settings(monkeypatch, tmp_path):
    for name in ("IOTHUB_CONNECTION_STRING", "IOTHUB_CA_FILE", "IOTHUB_EMULATOR_DISCOVERY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IOTHUB_EMULATOR_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def test_the_service_cli_backs_off_retries_then_fails_with_exit_10(throttled, exhausted_queries,
                                                                     isolated_cli_settings):
    slept: list[float] = []
    code, output = _service_cli(throttled, ["query", "SELECT * FROM devices"], slept.append)
    assert code == ExitCode.THROTTLED == 10
    assert slept == [3.0, 3.0, 3.0]  # the hub's Retry-After, three times
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "throttling" in lines[0] and "429" in lines[0]
    assert "Traceback" not in output and wellknown.POLICIES["iothubowner"][0] not in output
    assert throttled.threaded.call(lambda: throttled.threaded.server.service.limits.refused[QUERIES]) >= 4


def test_the_service_cli_succeeds_once_the_hub_lets_it(throttled, throttle_clock, exhausted_queries,
                                                        isolated_cli_settings):
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # waiting is what refills the bucket
        slept.append(seconds)
        throttle_clock.now += seconds

    code, output = _service_cli(throttled, ["--json", "query", "SELECT deviceId FROM devices"], sleep)
    assert code == 0, output
    assert slept == [3.0]
    assert {"deviceId": wellknown.DEVICE_ID} in json.loads(output)


def test_throttle_is_off_by_default_and_on_with_the_cli_flag(emulator):
    """The real `python -m emulator --throttle S1`: 20 queries a minute, then 429 with Retry-After."""
    rest = emulator.rest()  # the module's unthrottled emulator: no limit in sight
    for _ in range(S1_QUERIES_PER_MINUTE + 5):
        assert rest.call("POST", "/devices/query", json_body={"query": "SELECT * FROM devices"}).status_code == 200
    with EmulatorProcess(extra_args=["--throttle", "s1"]) as throttled:
        host, port = throttled.host_name, throttled.rest_port
        session = requests.Session()
        session.verify = throttled.ca_file
        statuses = []
        for _ in range(S1_QUERIES_PER_MINUTE + 5):  # the real clock may refill one token meanwhile
            response = session.post(f"https://{host}:{port}/devices/query?api-version=2021-04-12",
                                    json={"query": "SELECT * FROM devices"},
                                    headers={"Authorization": service_token(host, port)}, timeout=30)
            statuses.append(response.status_code)
        assert statuses[:S1_QUERIES_PER_MINUTE] == [200] * S1_QUERIES_PER_MINUTE
        assert statuses[-1] == 429 and int(response.headers["Retry-After"]) >= 1
        assert throttled.stop() == 0
        output = throttled.log.read_text()
    assert "Throttling:" in output and "S1" in output
    assert "Traceback" not in output


def test_an_unknown_tier_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "emulator", "--throttle", "S9"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "S9" in result.stderr


STANDARD_ONLY = {TWIN_READS, TWIN_UPDATES, METHODS, JOBS}


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_each_tier_serves_every_route_iot_hub_offers_at_that_tier(tmp_path, tier):
    """Every route of the routing table, on a hub of `tier`: on a Basic tier, the twin, method and job
    routes answer 403 OperationNotAvailableInCurrentTier and change nothing; every other route (and every
    route on F1 and the Standard tiers) is served."""
    threaded, watch = start_emulator(tmp_path, throttle=tier, throttle_clock=TestClock())
    try:
        hub = running(threaded, watch)
        rest = hub.rest()
        basic = tier.startswith("B")
        unavailable = []
        for verb, template, handler, _ in ROUTES:
            device_id, _ = hub.add_device("tier")  # a fresh device per route: a served call may delete it
            path = concrete_path(template, device_id, f"job-{device_id}")
            body = route_bodies(device_id, f"job-{device_id}").get((verb, template))
            before = hub.threaded.get_twin(device_id)
            response = rest.call(verb, path, json_body=body)
            assert response.status_code not in (401, 429, 500), (tier, verb, template, response.text)
            if response.status_code == 403:
                assert response.headers["iothub-errorcode"] == "OperationNotAvailableInCurrentTier"
                assert response.json()["Message"].startswith("ErrorCode:OperationNotAvailableInCurrentTier;")
                after = hub.threaded.get_twin(device_id)  # nothing applied
                assert (after["etag"], after["version"]) == (before["etag"], before["version"]), (tier, verb, template)
                assert "hacked" not in json.dumps(after)
                assert rest.call("GET", f"/jobs/v2/job-{device_id}").status_code in (403, 404)
                unavailable.append((verb, template))
            if basic and THROTTLE_CLASSES.get(handler) in STANDARD_ONLY:
                assert response.status_code == 403, (tier, verb, template, response.text)
        expected = {(verb, template) for verb, template, handler, _ in ROUTES
                    if THROTTLE_CLASSES.get(handler) in STANDARD_ONLY} if basic else set()
        assert set(unavailable) == expected
        assert not basic or {("GET", "/twins/{id}"), ("POST", "/twins/{deviceId}/methods"),
                             ("PUT", "/jobs/v2/{id}")} <= expected
    finally:
        stop_emulator(threaded, watch)
    assert not watch.problems, watch.describe()
