"""Bad input to both CLIs, run as real processes against a real emulator: malformed JSON, bad
connection strings, bad timeouts and start times, unknown devices and jobs, refused credentials.
Each gives one "Error: ..." line on stderr, the documented exit code, no traceback, no key.

The matrix runs its processes a few at a time up front (module fixture), then each case is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from hubsettings import wellknown

from .conftest import new_key

OWNER_KEY = wellknown.POLICIES[wellknown.OWNER_POLICY][0]
UNUSED_ADDRESS = "127.0.0.254"  # nothing listens there in these tests (the fixtures pick 2..250)


@dataclass(frozen=True)
class Case:
    program: str  # "service" or "device"
    args: tuple[str, ...]
    exit_code: int
    says: str  # a fragment the error line must contain (case-insensitive)


def service_cases(emulator, offline_device: str) -> dict[str, Case]:
    owner = wellknown.service_connection_string(emulator.host_name, emulator.rest_port)
    reader = wellknown.service_connection_string(emulator.host_name, emulator.rest_port, "registryRead")
    wrong_key = owner.replace(OWNER_KEY, new_key())
    cases = {
        # malformed JSON and arguments: 2
        "desired not JSON": (("twin", "update", offline_device, "--desired", "{bad"), 2, "json"),
        "desired not an object": (("twin", "update", offline_device, "--desired", "[1, 2]"), 2, "object"),
        "payload truncated": (("method", "invoke", offline_device, "m", "--payload", '{"a": '), 2, "json"),
        "payload file missing": (("method", "invoke", offline_device, "m", "--payload", "@/no/such/file.json"), 2,
                                 "file"),
        "job desired not JSON": (("job", "schedule-twin-update", "--device", offline_device, "--desired", "nope"), 2,
                                 "json"),
        "job tags not an object": (("job", "schedule-twin-update", "--device", offline_device, "--tags", '"x"'), 2,
                                   "object"),
        "job without target": (("job", "schedule-method", "--method", "m"), 2, "device"),
        # timeouts and start times: 2
        "response timeout too small": (("method", "invoke", offline_device, "m", "--response-timeout", "4"), 2,
                                       "response-timeout"),
        "response timeout not a number": (("method", "invoke", offline_device, "m", "--response-timeout", "soon"), 2,
                                          "response-timeout"),
        "connect timeout too big": (("method", "invoke", offline_device, "m", "--connect-timeout", "301"), 2,
                                    "connect-timeout"),
        "negative wait timeout": (("reboot", offline_device, "--timeout", "-1"), 2, "timeout"),
        "job wait timeout not a number": (("job", "wait", "j1", "--timeout", "x"), 2, "timeout"),
        "start time a word": (("job", "schedule-method", "--device", offline_device, "--method", "m",
                               "--start-time", "yesterday"), 2, "start"),
        "start time bad unit": (("job", "schedule-method", "--device", offline_device, "--method", "m",
                                 "--start-time", "+10x"), 2, "start"),
        "start time impossible date": (("job", "schedule-method", "--device", offline_device, "--method", "m",
                                        "--start-time", "2026-13-45T00:00:00"), 2, "start"),
        "max execution time zero": (("job", "schedule-method", "--device", offline_device, "--method", "m",
                                     "--max-execution-time", "0"), 2, "max-execution-time"),
        # connection strings and CA files: 3
        "connection string garbage": (("twin", "show", offline_device, "--connection-string", "garbage"), 3,
                                      "connection"),
        "connection string without host": (("twin", "show", offline_device, "--connection-string",
                                            f"SharedAccessKeyName=iothubowner;SharedAccessKey={OWNER_KEY}"), 3, "hostname"),
        "connection string key not base64": (("twin", "show", offline_device, "--connection-string",
                                              "HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=!!not-base64!!"),
                                             3, "key"),
        "device connection string given to the service CLI": (
            ("twin", "show", offline_device, "--connection-string",
             wellknown.device_connection_string(emulator.host_name)), 3, "connection"),
        "CA file missing": (("twin", "show", offline_device, "--ca-file", "/no/such/ca.pem"), 3, "ca"),
        # refused credentials: 11
        "wrong policy key": (("twin", "show", offline_device, "--connection-string", wrong_key), 11, "credentials"),
        "policy lacking the right": (("method", "invoke", offline_device, "m", "--connection-string", reader), 11,
                                     "credentials"),
        # unknown devices and jobs: 4; offline device: 5
        "unknown device twin": (("twin", "show", "no-such-device"), 4, "not found"),
        "unknown device method": (("method", "invoke", "no-such-device", "m"), 4, "not found"),
        "unknown device delete": (("device", "delete", "no-such-device"), 4, "not found"),
        "unknown device reboot": (("reboot", "no-such-device"), 4, "not found"),
        "unknown job show": (("job", "show", "no-such-job"), 4, "not found"),
        "unknown job cancel": (("job", "cancel", "no-such-job"), 4, "not found"),
        "unknown job wait": (("job", "wait", "no-such-job"), 4, "not found"),
        "offline device method": (("method", "invoke", offline_device, "m"), 5, "not online"),
        "existing device created again": (("device", "create", offline_device), 9, "exists"),
        # nobody there: 12
        "hub unreachable": (("twin", "show", offline_device, "--connection-string",
                             owner.replace(f"HostName={emulator.host_name}", f"HostName={UNUSED_ADDRESS}")), 12,
                            "reach"),
    }
    return {name: Case("service", args, code, says) for name, (args, code, says) in cases.items()}


def device_cases(emulator, disabled_device: tuple[str, str]) -> dict[str, Case]:
    host = emulator.host_name
    ca = ("--ca-file", emulator.ca_file)
    quick = ("--connect-timeout", "3", "--no-telemetry")
    disabled_id, disabled_key = disabled_device
    cases = {
        "connection string garbage": (("--connection-string", "garbage"), 3, "connection"),
        "connection string without key": (("--connection-string", f"HostName={host};DeviceId=d1"), 3, "key"),
        "connection string key not base64": (("--connection-string", f"HostName={host};DeviceId=d1;SharedAccessKey=%%%"),
                                             3, "key"),
        "service connection string given to the device": (
            ("--connection-string", wellknown.service_connection_string(host)), 3, "deviceid"),
        "CA file missing": (("--connection-string", wellknown.device_connection_string(host), "--ca-file",
                             "/no/such/ca.pem"), 3, "ca"),
        "count zero": (("--count", "0"), 2, "count"),
        "reboot delay not a number": (("--reboot-delay", "later"), 2, "reboot-delay"),
        "telemetry interval negative": (("--telemetry-interval", "-1"), 2, "telemetry-interval"),
        "connect timeout not a number": (("--connect-timeout", "x"), 2, "connect-timeout"),
        "wrong device key": (("--connection-string", wellknown.device_connection_string(host, "myDeviceId", new_key()),
                              *ca, *quick), 4, "refused"),
        "unknown device": (("--connection-string", wellknown.device_connection_string(host, "no-such-device", new_key()),
                            *ca, *quick), 4, "refused"),
        "disabled device": (("--connection-string", wellknown.device_connection_string(host, disabled_id, disabled_key),
                             *ca, *quick), 4, "refused"),
        "hub unreachable": (("--connection-string", wellknown.device_connection_string(UNUSED_ADDRESS),
                             *ca, "--connect-timeout", "1", "--no-telemetry"), 5, "reach"),
    }
    return {name: Case("device", args, code, says) for name, (args, code, says) in cases.items()}


@pytest.fixture(scope="module")
def matrix(emulator, tmp_path_factory):
    home = tmp_path_factory.mktemp("cli-home")
    offline_device, _ = emulator.add_device("offline")
    disabled = emulator.add_device("disabled", status="disabled")
    cases = {**{("service", k): v for k, v in service_cases(emulator, offline_device).items()},
             **{("device", k): v for k, v in device_cases(emulator, disabled).items()}}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("IOTHUB_", "PROVISIONING_")) and k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
    env.update(IOTHUB_EMULATOR_HOME=str(home), IOTHUB_EMULATOR_DISCOVERY=str(home / "none.json"),
               IOTHUB_CONNECTION_STRING=wellknown.service_connection_string(emulator.host_name, emulator.rest_port),
               IOTHUB_CA_FILE=emulator.ca_file, PYTHONUNBUFFERED="1")

    def run(case: Case) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", case.program, *case.args], cwd=home, env=env,
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)

    with ThreadPoolExecutor(4) as pool:
        results = dict(zip(cases, pool.map(run, cases.values())))
    return cases, results


def _names(program: str) -> list[str]:
    class Stub:
        host_name, rest_port, ca_file = "h", 1, "ca.pem"
    built = service_cases(Stub, "d") if program == "service" else device_cases(Stub, ("d", "k"))
    return list(built)


@pytest.mark.parametrize("key", [("service", n) for n in _names("service")] + [("device", n) for n in _names("device")],
                         ids=lambda key: f"{key[0]}: {key[1]}")
def test_bad_input_gives_one_clear_line_and_the_documented_exit_code(matrix, key):
    cases, results = matrix
    case, result = cases[key], results[key]
    output = result.stdout + result.stderr
    assert result.returncode == case.exit_code, output
    assert "Traceback" not in output and 'File "' not in output
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr
    assert case.says in errors[0].lower(), errors[0]
    assert len(errors[0]) < 400
    for secret in (OWNER_KEY, wellknown.DEVICE_KEY, wellknown.POLICIES["registryRead"][0]):
        assert secret not in output


def test_job_list_reads_every_page_of_the_hubs_jobs_query(emulator, tmp_path):
    """The control: `job list` against a real hub answer (a bare array, x-ms-continuation pages),
    which the Python SDK's own query_scheduled_jobs cannot read."""
    rest = emulator.rest()
    wave = uuid.uuid4().hex[:6]
    for n in range(105):
        created = rest.call("PUT", f"/jobs/v2/list-{wave}-{n}", json_body={
            "jobId": f"list-{wave}-{n}", "type": "scheduleUpdateTwin", "queryCondition": "*",
            "startTime": "2099-01-01T00:00:00Z", "updateTwin": {"tags": {"wave": wave}, "etag": "*"}})
        assert created.status_code == 200, created.text
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IOTHUB_", "PROVISIONING_"))}
    env.update(IOTHUB_EMULATOR_HOME=str(tmp_path), IOTHUB_EMULATOR_DISCOVERY=str(tmp_path / "none.json"),
               IOTHUB_CONNECTION_STRING=wellknown.service_connection_string(emulator.host_name, emulator.rest_port),
               IOTHUB_CA_FILE=emulator.ca_file)
    result = subprocess.run([sys.executable, "-m", "service", "job", "list", "--status", "scheduled", "--json"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    listed = {job["jobId"] for job in json.loads(result.stdout)}
    assert {f"list-{wave}-{n}" for n in range(105)} <= listed
