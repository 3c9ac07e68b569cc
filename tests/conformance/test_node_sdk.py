"""Microsoft's Node.js SDKs from npm against the emulator: a device over MQTT and MQTT over WebSockets, the
service SDK on a port-less HostName (registry, twins, methods, jobs, queries, error classes), and DPS."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from hubsettings import wellknown

from .conftest import NEEDS_443, NodeProcess, node_env, run_node

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("transport", ["mqtt", "mqttws"])
def test_node_device(node, hub, transport):
    if transport == "mqttws" and not hub.on_443:
        pytest.skip(f"MQTT over WebSockets always dials 443; {NEEDS_443}")
    device_id, key = hub.add_device(f"node-{transport}")
    client = NodeProcess(node, "device.js", node_env(hub, DEVICE_CONNECTION_STRING=hub.device_connection_string(
        device_id, key)), transport)
    try:
        client.wait_for("connected")
        twin = client.wait_for("twin")
        assert twin["reported"]["$version"] == 1 and twin["desired"]["$version"] == 1
        client.wait_for("desired")  # the whole desired document, once subscribed
        client.wait_for("reported")
        assert hub.threaded.get_twin(device_id)["properties"]["reported"]["transport"] == transport
        client.wait_for("sent")
        [message] = hub.telemetry(device_id)
        assert json.loads(message.body) == {"temperature": 21.5}
        assert message.properties == {"alert": "high"}
        assert message.system_properties["$.mid"] == f"{transport}-1"
        assert message.system_properties["$.ct"] == "application/json"
        client.wait_for("ready")

        hub.threaded.patch_desired(device_id, {"interval": 7})
        patch = client.wait_for("desired")["patch"]
        assert patch["interval"] == 7 and patch["$version"] == 2

        result = hub.threaded.invoke_method(device_id, "echo", {"n": 1}, response_timeout=30)
        assert (result.status, result.payload) == (200, {"echo": {"n": 1}, "transport": transport})
        assert client.wait_for("method")["payload"] == {"n": 1}
    finally:
        client.stop()
    assert client.process.returncode == 0
    assert not [e for e in client.seen if e.get("event") in ("clientError", "methodResponseError")], client.seen


# ---- the service SDK: one run of service.js, asserted step by step ----------------------------------------

@pytest.fixture(scope="module")
def service_run(node, hub):
    if not hub.on_443:
        pytest.skip(f"the Node.js service SDK takes no port in HostName (it fails with ENOTFOUND); {NEEDS_443}")
    assert ":" not in hub.service_connection_string.split(";")[0]  # HostName=<host>, as on Azure
    prefix = f"node-svc-{uuid.uuid4().hex[:6]}"
    return prefix, run_node(node, "service.js", node_env(hub, SERVICE_CONNECTION_STRING=hub.service_connection_string),
                            prefix)


def ok(results, name):
    outcome = results[name]
    assert outcome["ok"], f"{name}: {outcome['error']}"
    return outcome["value"]


def refused(results, name):
    outcome = results[name]
    assert not outcome["ok"], f"{name} should have been refused, got {outcome['value']}"
    return outcome["error"]


def test_registry_crud(service_run):
    prefix, results = service_run
    assert ok(results, "create") == {"deviceId": f"{prefix}-offline", "status": "enabled", "hasKey": True}
    assert ok(results, "get") == f"{prefix}-offline"
    assert ok(results, "update") == "disabled"
    assert ok(results, "delete") is True


def test_registry_list_with_the_sdks_trailing_slash(service_run):
    """The Node SDK lists devices with GET /devices/?api-version=... (a trailing slash)."""
    prefix, results = service_run
    assert f"{prefix}-offline" in ok(results, "list")


def test_twin_update_with_etag_and_a_stale_etag(service_run):
    prefix, results = service_run
    assert ok(results, "twinUpdate") == {"etagChanged": True, "tags": {"site": prefix}, "interval": 5}
    assert refused(results, "twinUpdateStaleEtag")["name"] == "InvalidEtagError"


def test_query(service_run):
    prefix, results = service_run
    assert ok(results, "query") == [f"{prefix}-offline"]


def test_direct_method_to_a_node_device(service_run):
    _, results = service_run
    assert ok(results, "methodOnline") == {"status": 200, "payload": {"pong": {"n": 1}}}


def test_jobs_twin_update_by_query(service_run):
    prefix, results = service_run
    assert ok(results, "scheduleTwinUpdate") == {"jobId": f"{prefix}-twin-job", "type": "scheduleUpdateTwin"}
    assert ok(results, "twinJobDone") == {"status": "completed", "firmware": "2.0"}


def test_jobs_device_method_on_every_device(service_run):
    """queryCondition "*" (the az help's example) means every device."""
    prefix, results = service_run
    scheduled = ok(results, "scheduleDeviceMethodStar")
    assert (scheduled["jobId"], scheduled["type"]) == (f"{prefix}-method-job", "scheduleDeviceMethod")
    done = ok(results, "methodJobDone")
    assert done["status"] == "completed"
    assert done["deviceJobStatistics"]["succeededCount"] >= 1  # the Node device answered


def test_job_list_through_the_sdks_query(service_run):
    """JobClient.createQuery reads GET /jobs/v2/query as IoT Hub answers it: a JSON array plus headers."""
    prefix, results = service_run
    listed = {job["jobId"]: job for job in ok(results, "jobList")}
    assert listed[f"{prefix}-twin-job"]["type"] == "scheduleUpdateTwin"
    assert listed[f"{prefix}-method-job"]["status"] == "completed"
    by_type = ok(results, "jobListByType")
    assert f"{prefix}-method-job" in by_type and f"{prefix}-twin-job" not in by_type


@pytest.mark.parametrize("step, error_class, status", [
    ("createDuplicate", "DeviceAlreadyExistsError", 409),
    ("getUnknown", "DeviceNotFoundError", 404),
    ("getDeleted", "DeviceNotFoundError", 404),
    ("twinUpdateStaleEtag", "InvalidEtagError", 412),
])
def test_the_sdks_error_translation_sees_iot_hubs_error_bodies(service_run, step, error_class, status):
    """The SDK picks its error class from the status and `Message: "ErrorCode:<code>;..."` of the body."""
    _, results = service_run
    error = refused(results, step)
    assert (error["name"], error["status"]) == (error_class, status), error


def test_method_to_an_offline_device_is_iot_hubs_404103(service_run):
    """IoT Hub's body: {"Message": "<JSON string with errorCode 404103>", "ExceptionMessage": ""}, which the
    Node SDK cannot split into a code and so reports as Error('Not found') with the response attached."""
    _, results = service_run
    error = refused(results, "methodOffline")
    assert (error["name"], error["status"], error["errorCodeHeader"]) == ("Error", 404, "DeviceNotOnline"), error
    body = json.loads(error["body"])
    assert set(body) == {"Message", "ExceptionMessage"}
    assert json.loads(body["Message"])["errorCode"] == 404103


# ---- DPS --------------------------------------------------------------------------------------------------------

def test_dps_group_enrollment_with_a_derived_key(node, hub):
    registration_id = f"node-dps-{uuid.uuid4().hex[:6]}"
    results = run_node(node, "dps.js", node_env(
        hub, PROVISIONING_HOST=hub.host_name, PROVISIONING_IDSCOPE=wellknown.DPS_ID_SCOPE,
        PROVISIONING_REGISTRATION_ID=registration_id, PROVISIONING_GROUP_KEY=wellknown.DPS_GROUP_KEY))
    assert ok(results, "register") == {"assignedHub": hub.host_name, "deviceId": registration_id,
                                       "status": "assigned"}
    assert ok(results, "connectAndSend") is True
    assert [m.body for m in hub.telemetry(registration_id)] == [b"provisioned"]
    # The key Microsoft's sample derives is the one `iothub-emulator dps compute-device-key` prints.
    printed = subprocess.run([sys.executable, "-m", "emulator", "dps", "compute-device-key", "--registration-id",
                              registration_id], capture_output=True, text=True, check=True).stdout.strip()
    assert printed == results["derivedKey"]
