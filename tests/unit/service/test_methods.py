from __future__ import annotations

import json

import pytest

from .fakes import http_error


def test_invoke_prints_status_and_payload(run, fake_hub):
    fake_hub.method_results[("d1", "lockDoor")] = {"status": 200, "payload": {"locked": True}}
    result = run("method", "invoke", "d1", "lockDoor", "--payload", '{"door": "front"}')
    assert result.exit_code == 0
    assert "Method lockDoor on d1: status 200" in result.stdout
    assert '"locked": true' in result.stdout
    (device_id, request), = fake_hub.calls_to("invoke_device_method")
    assert device_id == "d1"
    assert request == {"methodName": "lockDoor", "payload": {"door": "front"},
                       "responseTimeoutInSeconds": 30, "connectTimeoutInSeconds": 0}


def test_invoke_json_shape_and_timeouts(run, fake_hub):
    fake_hub.method_results[("d1", "m")] = {"status": 201, "payload": "ok"}
    data = run.json("method", "invoke", "d1", "m", "--response-timeout", "5", "--connect-timeout", "300")
    assert data == {"deviceId": "d1", "methodName": "m", "status": 201, "payload": "ok"}
    (_, request), = fake_hub.calls_to("invoke_device_method")
    assert request["responseTimeoutInSeconds"] == 5 and request["connectTimeoutInSeconds"] == 300


def test_invoke_without_payload_passes_none(run, fake_hub):
    assert run("method", "invoke", "d1", "m").exit_code == 0
    (_, request), = fake_hub.calls_to("invoke_device_method")
    assert "payload" not in request  # None; the real SDK then sends ""


def test_payload_from_file(run, fake_hub, tmp_path):
    (tmp_path / "p.json").write_text('[1, 2, {"a": null}]')
    assert run("method", "invoke", "d1", "m", "--payload", f"@{tmp_path / 'p.json'}").exit_code == 0
    (_, request), = fake_hub.calls_to("invoke_device_method")
    assert request["payload"] == [1, 2, {"a": None}]


@pytest.mark.parametrize("payload,message", [
    ("{not json", "Error: --payload is not valid JSON"),
    ("NaN", "Error: --payload is not valid JSON"),
    ('{"x": Infinity}', "Error: --payload is not valid JSON"),
    ("@/nonexistent/p.json", "Error: --payload: cannot read /nonexistent/p.json"),
    (json.dumps({"big": "x" * 140_000}), "Error: --payload is larger than IoT Hub's 128 KB limit"),
])
def test_bad_payload_fails_before_any_network_call(run, fake_hub, payload, message):
    result = run("method", "invoke", "d1", "m", "--payload", payload)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert fake_hub.calls == [] and fake_hub.settings_seen == []


@pytest.mark.parametrize("option,value", [("--response-timeout", "4"), ("--response-timeout", "301"),
                                          ("--connect-timeout", "-1"), ("--connect-timeout", "301")])
def test_timeouts_out_of_range_are_usage_errors(run, fake_hub, option, value):
    result = run("method", "invoke", "d1", "m", option, value)
    assert result.exit_code == 2
    assert fake_hub.calls == []


def test_non_2xx_device_status_exits_7_after_printing_the_answer(run, fake_hub):
    fake_hub.method_results[("d1", "m")] = {"status": 500, "payload": {"error": "door jammed"}}
    result = run("method", "invoke", "d1", "m", "--json")
    assert result.exit_code == 7
    assert json.loads(result.stdout)["status"] == 500
    assert result.stderr.strip() == "Error: device 'd1' answered method 'm' with status 500"


@pytest.mark.parametrize("error,code,message", [
    (http_error(404, {"errorCode": 404103, "message": "Timed out waiting for device to connect."}), 5,
     "Error: device 'd1' is not online"),
    (http_error(404, {"Message": json.dumps({"errorCode": 404103, "message": "offline"}),
                      "ExceptionMessage": ""}), 5, "Error: device 'd1' is not online"),
    (http_error(404, {"Message": json.dumps({
        "errorCode": 404103, "trackingId": "b575211ff5194d56b18721941e82c3d5",
        "message": "The operation failed because the requested device isn't online or hasn't registered "
                   "the direct method callback.", "info": {}, "timestampUtc": "2022-09-12T21:59:47.99936Z"}),
        "ExceptionMessage": ""}, {"iothub-errorcode": "DeviceNotOnline"}), 5, "Error: device 'd1' is not online"),
    (http_error(504, {"Message": json.dumps({
        "errorCode": 504101, "trackingId": "55b1d7845498428593c2738d94442607-G:32-TimeStamp:05/15/2020 20:43:10",
        "message": "Timed out waiting for the response from device.", "info": {},
        "timestampUtc": "2020-05-15T20:43:10.3899553Z"}), "ExceptionMessage": ""},
        {"iothub-errorcode": "GatewayTimeout"}), 6, "Error: device 'd1' did not answer method 'm' in time"),
    (http_error(404, "not json", {"iothub-errorcode": "DeviceNotOnline"}), 5, "Error: device 'd1' is not online"),
    (http_error(404, {"Message": "ErrorCode:DeviceNotFound;d1", "ExceptionMessage": "x"}), 4,
     "Error: device 'd1' not found on hub testhub.azure-devices.net"),
    (http_error(404, {"errorCode": 404001, "message": "Device d1 not found"}), 4,
     "Error: device 'd1' not found"),
])
def test_method_errors_map_to_one_line_and_exit_code(run, fake_hub, error, code, message):
    fake_hub.fail("invoke_device_method", error)
    result = run("method", "invoke", "d1", "m")
    assert result.exit_code == code
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_long_method_timeouts_raise_the_http_read_timeout(run, fake_hub):
    """msrest gives up reading after 100 s; the hub may hold a method call for connect + response timeouts."""
    fake_hub.method_results[("d1", "m")] = {"status": 200, "payload": None}
    run("method", "invoke", "d1", "m", "--response-timeout", "200", "--connect-timeout", "100")
    manager, = fake_hub.registry_managers
    assert manager.protocol.config.connection.timeout >= 315
