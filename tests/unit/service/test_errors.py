"""Every failure is one masked "Error: ..." line with its documented exit code."""

from __future__ import annotations

import pytest
import requests
from msrest.exceptions import DeserializationError

from service.hub import parse_hub_error

from .fakes import SERVICE_KEY, connection_error, http_error, twin_json


@pytest.fixture
def d1(fake_hub):
    fake_hub.set_twins("d1", twin_json("d1"))


def assert_one_error_line(result, code: int, starts: str) -> str:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize("status", [401, 403])
def test_unauthorized(run, fake_hub, d1, status):
    fake_hub.fail("get_twin", http_error(status, {"Message": "ErrorCode:IotHubUnauthorizedAccess;Unauthorized"}))
    line = assert_one_error_line(run("twin", "show", "d1"), 11,
                                 f"Error: the hub testhub.azure-devices.net refused the credentials ({status})")
    assert "IOTHUB_CONNECTION_STRING" in line


def test_throttled_then_succeeds_after_backing_off(run, fake_hub, d1, clock):
    fake_hub.fail("get_twin", http_error(429, {"Message": "ErrorCode:ThrottlingException;slow down"}),
                  http_error(429, {"Message": "ErrorCode:ThrottlingException;slow down"}, {"Retry-After": "7"}))
    result = run("twin", "show", "d1")
    assert result.exit_code == 0
    assert clock.sleeps == [1.0, 7.0]
    assert len(fake_hub.calls_to("get_twin")) == 3


def test_throttled_for_good_exits_10_after_bounded_retries(run, fake_hub, d1, clock):
    fake_hub.fail("invoke_device_method", *[http_error(429, {"Message": "ErrorCode:ThrottlingException;x"})] * 10)
    assert_one_error_line(run("method", "invoke", "d1", "m"), 10,
                          "Error: the hub testhub.azure-devices.net is throttling requests (429)")
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert len(fake_hub.calls_to("invoke_device_method")) == 4


def test_other_hub_errors_exit_1_with_the_hub_message(run, fake_hub):
    fake_hub.fail("query_iot_hub", http_error(400, {"Message": "ErrorCode:SqlQueryInvalid;Syntax error at 'FRM'",
                                                    "ExceptionMessage": "Tracking ID:1"}))
    line = assert_one_error_line(run("query", "SELECT * FRM devices"), 1,
                                 "Error: the hub testhub.azure-devices.net answered 400")
    assert "Syntax error at 'FRM'" in line


def test_unreadable_hub_answer(run, fake_hub, d1):
    fake_hub.fail("get_twin", DeserializationError("Unable to deserialize to object: type"))
    assert_one_error_line(run("twin", "show", "d1"), 1,
                          "Error: the hub at testhub.azure-devices.net sent an answer that cannot be read")


def test_unreachable_hub(run, fake_hub, d1):
    fake_hub.fail("get_twin", connection_error(requests.exceptions.ConnectionError("[Errno 111] Connection refused")))
    line = assert_one_error_line(run("twin", "show", "d1"), 12,
                                 "Error: cannot reach the IoT hub at testhub.azure-devices.net (connection refused)")
    assert "iothub-emulator" not in line  # an Azure hub: no emulator hint


def test_unreachable_local_emulator_says_how_to_start_it(run, fake_hub, d1, monkeypatch):
    monkeypatch.delenv("IOTHUB_CONNECTION_STRING")  # nothing configured: the local emulator's defaults
    fake_hub.fail("get_twin", connection_error(requests.exceptions.ConnectionError("Connection refused")))
    line = assert_one_error_line(run("twin", "show", "d1"), 12, "Error: cannot reach the IoT hub at localhost (")
    assert "start it with `iothub-emulator`" in line
    assert fake_hub.settings_seen[0].is_emulator


def test_hub_timeout_is_unreachable(run, fake_hub, d1):
    fake_hub.fail("get_twin", connection_error(requests.exceptions.ReadTimeout("read timed out")))
    assert_one_error_line(run("twin", "show", "d1"), 12,
                          "Error: the hub testhub.azure-devices.net did not answer in time")


def test_tls_failure_hints_at_the_ca_setting(run, fake_hub, d1):
    fake_hub.fail("get_twin", connection_error(requests.exceptions.SSLError(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate")))
    line = assert_one_error_line(run("twin", "show", "d1"), 13,
                                 "Error: TLS with testhub.azure-devices.net failed (certificate verify failed)")
    assert "IOTHUB_CA_FILE" in line and "--ca-file" in line


def test_unusable_ca_bundle_is_a_tls_error(run, fake_hub, d1):
    fake_hub.fail("get_twin", OSError("Could not find a suitable TLS CA certificate bundle, invalid path: /x"))
    assert_one_error_line(run("twin", "show", "d1"), 13, "Error: cannot use the CA file")


@pytest.mark.parametrize("args,starts", [
    (("--connection-string", "HostName=h;SharedAccessKeyName=p;SharedAccessKey=not base64!"),
     "Error: IOTHUB_CONNECTION_STRING (command line): SharedAccessKey is not valid base64"),
    (("--login", f"HostName=h;DeviceId=d;SharedAccessKey={SERVICE_KEY}"),
     "Error: IOTHUB_CONNECTION_STRING (command line): this is a device connection string"),
    (("--connection-string", "nonsense"), "Error: IOTHUB_CONNECTION_STRING (command line): 'nonsense' is not of"),
    (("--ca-file", "/nonexistent/ca.pem"), "Error: IOTHUB_CA_FILE (command line): /nonexistent/ca.pem does not exist"),
])
def test_invalid_settings_exit_3_before_any_call(run, fake_hub, args, starts):
    line = assert_one_error_line(run(*args, "twin", "show", "d1"), 3, starts)
    assert SERVICE_KEY not in line
    assert fake_hub.calls == []


def test_invalid_connection_string_from_environment(run, fake_hub, monkeypatch):
    monkeypatch.setenv("IOTHUB_CONNECTION_STRING", "HostName=h;SharedAccessKeyName=p")
    assert_one_error_line(run("twin", "show", "d1"), 3,
                          "Error: IOTHUB_CONNECTION_STRING (environment): SharedAccessKey is missing")


def test_global_option_on_subcommand_overrides_root(run, fake_hub, d1):
    root = f"HostName=root.azure-devices.net;SharedAccessKeyName=a;SharedAccessKey={SERVICE_KEY}"
    sub = f"HostName=sub.azure-devices.net;SharedAccessKeyName=b;SharedAccessKey={SERVICE_KEY}"
    assert run("--login", root, "twin", "show", "d1").exit_code == 0
    assert run("--login", root, "twin", "show", "d1", "--connection-string", sub).exit_code == 0
    assert [s.connection_string.host_name for s in fake_hub.settings_seen] == ["root.azure-devices.net",
                                                                               "sub.azure-devices.net"]


def test_ca_file_option_reaches_the_settings(run, fake_hub, d1, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    assert run("twin", "show", "d1", "--ca-file", str(ca)).exit_code == 0
    assert fake_hub.settings_seen[0].ca_file == ca


def test_secrets_in_hub_messages_are_masked(run, fake_hub):
    fake_hub.fail("query_iot_hub", http_error(400, {"Message": f"bad SharedAccessKey={SERVICE_KEY}"}))
    result = run("query", "SELECT * FROM devices")
    assert result.exit_code == 1 and SERVICE_KEY not in result.output


@pytest.mark.parametrize("body,codes,message", [
    ('{"Message":"ErrorCode:DeviceNotFound;Device d1 not found","ExceptionMessage":"Tracking ID:x"}',
     {"DeviceNotFound"}, "Device d1 not found"),
    ('{"errorCode":404103,"trackingId":"t","message":"Timed out waiting for device to connect.","info":{}}',
     {"404103"}, "Timed out waiting for device to connect."),
    ('{"Message":"{\\"errorCode\\":504101,\\"message\\":\\"Timed out\\"}","ExceptionMessage":""}',
     {"504101"}, "Timed out"),
    ('{"Message":"{\\"errorCode\\":404103,\\"trackingId\\":\\"t-G:0-TimeStamp:11/12/2019 22:27:46\\",'
     '\\"message\\":\\"Timed out waiting for device to connect.\\",\\"info\\":{\\"timeout\\":\\"00:00:00\\"},'
     '\\"timestampUtc\\":\\"2019-11-12T22:27:46.5615872Z\\"}","ExceptionMessage":""}',
     {"404103"}, "Timed out waiting for device to connect."),
    # the emulator's old invention: a top-level integer "ErrorCode" is not IoT Hub's and is not read
    ('{"Message":"ErrorCode:ArgumentInvalid;bad","ExceptionMessage":"Tracking ID:x","ErrorCode":404001}',
     {"ArgumentInvalid"}, "bad"),
    ('{"Message":"ErrorCode:IotHubUnauthorizedAccess;Unauthorized","ExceptionMessage":"Tracking ID:(id)-'
     'TimeStamp:12/14/2016 03:15:17"}', {"IotHubUnauthorizedAccess"}, "Unauthorized"),
    # the jobs service wraps its own answer
    ('{"Message":"ErrorCode:ArgumentInvalid;Error: BadRequest {\\"Message\\":\\"ErrorCode:ArgumentInvalid;Missing '
     'or invalid etag\\",\\"ExceptionMessage\\":\\"Tracking ID:1234\\"}","ExceptionMessage":""}',
     {"ArgumentInvalid"}, "Missing or invalid etag"),
    ('{"Message":"ErrorCode:JobQuotaExceeded;Error: 403 ErrorCode: JobQuotaExceeded\\nMessage: Job quota has been '
     'exceeded\\nTimestamp: 08/15/2026 09:38:50\\nTracking ID: ","ExceptionMessage":""}',
     {"JobQuotaExceeded"}, "Job quota has been exceeded"),
    ("<html>Bad gateway</html>", set(), "<html>Bad gateway</html>"),
    ("", set(), ""),
])
def test_parse_hub_error_shapes(body, codes, message):
    assert parse_hub_error(body) == (codes, message)


def test_parse_hub_error_reads_the_iothub_errorcode_header():
    assert parse_hub_error("", "ThrottlingException") == ({"ThrottlingException"}, "")
    assert parse_hub_error('{"Message":"ErrorCode:DeviceNotFound;d1","ExceptionMessage":""}', "DeviceNotFound") == (
        {"DeviceNotFound"}, "d1")


def test_other_msrest_failures_are_one_line(run, fake_hub, d1):
    from msrest.exceptions import ValidationError
    fake_hub.fail("get_twin", ValidationError("required", "device_id", None))
    assert_one_error_line(run("twin", "show", "d1"), 1, "Error: the request to testhub.azure-devices.net failed:")


def test_connection_string_from_dotenv(run, fake_hub, d1, monkeypatch, tmp_path):
    monkeypatch.delenv("IOTHUB_CONNECTION_STRING")
    (tmp_path / ".env").write_text(
        f"IOTHUB_CONNECTION_STRING=HostName=dotenv.azure-devices.net;SharedAccessKeyName=p;SharedAccessKey={SERVICE_KEY}\n")
    assert run("twin", "show", "d1").exit_code == 0
    assert fake_hub.settings_seen[0].connection_string.host_name == "dotenv.azure-devices.net"
