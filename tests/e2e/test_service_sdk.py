"""The unmodified azure-iot-hub clients (IoTHubRegistryManager, IoTHubJobManager) and azure-iot-device
clients against a real emulator (the shared `emulator` fixture): HTTPS REST front + MQTT/TLS listener +
job scheduler on one loop."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
from azure.iot.device import IoTHubDeviceClient, MethodResponse
from azure.iot.hub import IoTHubJobManager, IoTHubRegistryManager
from azure.iot.hub.models import CloudToDeviceMethod, JobRequest, QuerySpecification, Twin, TwinProperties
from msrest.exceptions import DeserializationError, HttpOperationError

from hubsettings import wellknown
from service.hub import get_jobs_page, read_jobs_page
from tests.e2e.support import unique_device_id, wait_for

pytestmark = pytest.mark.e2e

WAIT = 30.0  # upper bound for anything that should take well under a second


def _error(excinfo) -> tuple[int, str]:
    response = excinfo.value.response
    return response.status_code, response.text


@pytest.fixture(scope="module")
def service(emulator):
    """What a service program needs: connection strings per policy and the CA file."""
    server = emulator.server
    host = server.host_name
    port = server.rest_port

    class Service:
        ca_file = str(server.certificates.ca_cert)
        ca_pem = server.certificates.ca_pem()

        @staticmethod
        def connection_string(policy: str = wellknown.OWNER_POLICY, key: str | None = None) -> str:
            text = wellknown.service_connection_string(host, port, policy)
            return text if key is None else text.replace(wellknown.POLICIES[policy][0], key)

        def registry(self, policy: str = wellknown.OWNER_POLICY, key: str | None = None) -> IoTHubRegistryManager:
            manager = IoTHubRegistryManager.from_connection_string(self.connection_string(policy, key))
            manager.protocol.config.connection.verify = self.ca_file
            return manager

        def jobs(self, policy: str = wellknown.OWNER_POLICY) -> IoTHubJobManager:
            manager = IoTHubJobManager.from_connection_string(self.connection_string(policy))
            manager.protocol.config.connection.verify = self.ca_file
            return manager

    return Service()


@pytest.fixture(scope="module")
def registry(service):
    return service.registry()


@pytest.fixture(scope="module")
def job_manager(service):
    return service.jobs()


@pytest.fixture
def devices(emulator, service, registry):
    """Create devices over REST and connect device clients that answer methods and record patches."""
    created, clients = [], []

    class Devices:
        def create(self, prefix: str = "svc") -> str:
            device_id = unique_device_id(prefix)
            registry.create_device_with_sas(device_id, None, None, "enabled")
            created.append(device_id)
            return device_id

        def connect(self, device_id: str, answer: bool = True) -> IoTHubDeviceClient:
            connection_string = emulator.call(emulator.server.device_connection_string, device_id)
            client = IoTHubDeviceClient.create_from_connection_string(
                connection_string, server_verification_cert=service.ca_pem)
            client.patches = []
            client.patch_received = threading.Event()

            def on_method(request):
                if answer:
                    client.send_method_response(MethodResponse.create_from_method_request(
                        request, 200, {"device": device_id, "method": request.name, "got": request.payload}))

            def on_patch(patch):
                client.patches.append(patch)
                client.patch_received.set()

            client.on_method_request_received = on_method
            client.on_twin_desired_properties_patch_received = on_patch
            client.connect()
            clients.append(client)
            return client

    yield Devices()
    for client in clients:
        client.shutdown()


# ---- device identities -------------------------------------------------------------------------

def test_device_lifecycle_and_its_error_codes(registry):
    device_id = unique_device_id("life")
    created = registry.create_device_with_sas(device_id, None, None, "enabled")
    assert created.device_id == device_id and created.status == "enabled"
    assert created.authentication.symmetric_key.primary_key

    with pytest.raises(HttpOperationError) as duplicate:
        registry.create_device_with_sas(device_id, None, None, "enabled")
    assert _error(duplicate)[0] == 409

    fetched = registry.get_device(device_id)
    assert fetched.etag == created.etag
    assert device_id in [device.device_id for device in registry.get_devices(1000)]

    updated = registry.update_device_with_sas(device_id, fetched.etag, None, None, "disabled")
    assert updated.status == "disabled"
    with pytest.raises(HttpOperationError) as stale:
        registry.update_device_with_sas(device_id, fetched.etag, None, None, "enabled")
    assert _error(stale)[0] == 412

    registry.delete_device(device_id)
    with pytest.raises(HttpOperationError) as missing:
        registry.get_device(device_id)
    status, text = _error(missing)
    assert status == 404 and "DeviceNotFound" in text
    with pytest.raises(HttpOperationError) as gone:
        registry.delete_device(device_id)
    assert _error(gone)[0] == 404


def test_registry_and_service_statistics(registry, devices):
    devices.connect(devices.create("stats"))
    statistics = registry.get_device_registry_statistics()
    assert statistics.total_device_count >= 1
    assert statistics.enabled_device_count + statistics.disabled_device_count == statistics.total_device_count
    assert registry.get_service_statistics().connected_device_count >= 1


# ---- twins ----------------------------------------------------------------------------------------

def test_twin_update_reaches_the_device_and_etags_guard_it(registry, devices):
    device_id = devices.create("twin")
    client = devices.connect(device_id)
    twin = registry.get_twin(device_id)
    assert twin.device_id == device_id and twin.connection_state == "Connected"

    patch = Twin(tags={"building": "43"}, properties=TwinProperties(desired={"telemetryInterval": 7}))
    updated = registry.update_twin(device_id, patch, twin.etag)
    assert updated.tags == {"building": "43"}
    assert updated.properties.desired["telemetryInterval"] == 7
    assert client.patch_received.wait(WAIT)
    assert client.patches[-1]["telemetryInterval"] == 7

    with pytest.raises(HttpOperationError) as stale:
        registry.update_twin(device_id, Twin(tags={"building": "44"}), twin.etag)
    assert _error(stale)[0] == 412

    replaced = registry.replace_twin(device_id, Twin(tags={"floor": 1}, properties=TwinProperties(desired={})))
    assert replaced.tags == {"floor": 1}
    assert "telemetryInterval" not in replaced.properties.desired

    with pytest.raises(HttpOperationError) as missing:
        registry.get_twin("nobody-" + uuid.uuid4().hex[:6])
    assert _error(missing)[0] == 404


# ---- direct methods -----------------------------------------------------------------------------

def test_method_round_trip_and_offline_device(registry, devices):
    device_id = devices.create("meth")
    with pytest.raises(HttpOperationError) as offline:
        registry.invoke_device_method(device_id, CloudToDeviceMethod(method_name="reboot", payload=None))
    status, text = _error(offline)
    assert status == 404 and "404103" in text

    devices.connect(device_id)
    result = registry.invoke_device_method(device_id, CloudToDeviceMethod(
        method_name="lockDoor", payload={"door": "front"}, response_timeout_in_seconds=30))
    assert result.status == 200
    assert result.payload == {"device": device_id, "method": "lockDoor", "got": {"door": "front"}}


def test_method_waits_for_the_device_to_connect(emulator, registry, devices):
    device_id = devices.create("wait")
    outcome = {}

    def invoke():
        try:
            outcome["result"] = registry.invoke_device_method(device_id, CloudToDeviceMethod(
                method_name="reboot", payload={"delay": 0}, connect_timeout_in_seconds=60))
        except Exception as error:  # reported by the assertion below
            outcome["error"] = error

    caller = threading.Thread(target=invoke)
    caller.start()
    wait_for(lambda: emulator.call(lambda: len(emulator.hub.methods.waiting_for(device_id))), timeout=WAIT,
             what="the method call to wait for the device")
    devices.connect(device_id)
    caller.join(WAIT)
    assert not caller.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].status == 200


def test_unanswered_method_is_504101(registry, devices):
    device_id = devices.create("mute")
    devices.connect(device_id, answer=False)
    with pytest.raises(HttpOperationError) as timeout:
        registry.invoke_device_method(device_id, CloudToDeviceMethod(
            method_name="reboot", payload=None, response_timeout_in_seconds=5))  # IoT Hub's minimum
    status, text = _error(timeout)
    assert status == 504 and "504101" in text


def test_method_arguments_are_range_checked(registry, devices):
    device_id = devices.create("range")
    with pytest.raises(HttpOperationError) as bad:
        registry.invoke_device_method(device_id, CloudToDeviceMethod(
            method_name="reboot", payload=None, response_timeout_in_seconds=301))
    assert _error(bad)[0] == 400


# ---- queries ------------------------------------------------------------------------------------

def test_query_pages_through_continuation_tokens(registry, devices):
    ids = sorted(devices.create("qpage") for _ in range(5))
    tag = uuid.uuid4().hex[:8]
    for device_id in ids:
        registry.update_twin(device_id, Twin(tags={"batch": tag}), "*")
    query = QuerySpecification(query=f"SELECT * FROM devices WHERE tags.batch = '{tag}'")
    seen, token, pages = [], None, 0
    while True:
        result = registry.query_iot_hub(query, token, 2)
        assert result.type == "twin"
        assert len(result.items) <= 2
        seen += [twin.device_id for twin in result.items]
        pages += 1
        token = result.continuation_token
        if not token:
            break
    assert pages == 3 and sorted(seen) == ids

    with pytest.raises(HttpOperationError) as bad:
        registry.query_iot_hub(QuerySpecification(query="SELECT * FROM devices WHERE"))
    status, text = _error(bad)
    assert status == 400 and "column" in text


# ---- jobs ---------------------------------------------------------------------------------------

def _job_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _wait_for_job(job_manager, job_id: str, statuses=("completed", "failed", "cancelled")):
    return wait_for(lambda: (lambda job: job if job.status in statuses else None)(
        job_manager.get_scheduled_job(job_id)), timeout=WAIT, interval=0.1, what=f"job {job_id} to finish")


def _device_job_rows(registry, job_id: str) -> dict[str, dict]:
    """devices.jobs rows through the SDK's own query call (raw: the Twin model would drop job fields)."""
    raw = registry.protocol.query.get_twins(
        QuerySpecification(query=f"SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{job_id}'"), raw=True)
    assert raw.response.headers["x-ms-item-type"] == "deviceJob"
    return {row["deviceId"]: row for row in raw.response.json()}


def test_method_job_over_connected_devices_and_one_offline(registry, job_manager, devices):
    tag = uuid.uuid4().hex[:8]
    online = [devices.create("jobon") for _ in range(3)]
    offline = devices.create("joboff")
    for device_id in [*online, offline]:
        registry.update_twin(device_id, Twin(tags={"fleet": tag}), "*")
    for device_id in online:
        devices.connect(device_id)

    job_id = _job_id("lock")
    request = JobRequest(job_id=job_id, type="scheduleDeviceMethod", query_condition=f"tags.fleet = '{tag}'",
                         cloud_to_device_method=CloudToDeviceMethod(method_name="lockDoor", payload={"all": True},
                                                                    response_timeout_in_seconds=30),
                         max_execution_time_in_seconds=120)
    created = job_manager.create_scheduled_job(job_id, request)
    assert created.job_id == job_id and created.status in ("queued", "running", "completed")

    job = _wait_for_job(job_manager, job_id)
    assert job.status == "completed"
    statistics = job.device_job_statistics
    assert (statistics.device_count, statistics.succeeded_count, statistics.failed_count) == (4, 3, 1)

    rows = _device_job_rows(registry, job_id)
    assert set(rows) == {*online, offline}
    for device_id in online:
        assert rows[device_id]["status"] == "completed"
        response = rows[device_id]["outcome"]["deviceMethodResponse"]
        assert response == {"status": 200, "payload": {"device": device_id, "method": "lockDoor",
                                                       "got": {"all": True}}}
    assert rows[offline]["status"] == "failed"
    assert rows[offline]["error"]["code"] == "DeviceNotOnline"

    listed, _ = read_jobs_page(get_jobs_page(job_manager, "scheduleDeviceMethod", "completed", None, 100))
    assert job_id in [item["jobId"] for item in listed]


def test_twin_update_job_reaches_connected_devices(registry, job_manager, devices):
    tag = uuid.uuid4().hex[:8]
    targets = [devices.create("jobtwin") for _ in range(2)]
    for device_id in targets:
        registry.update_twin(device_id, Twin(tags={"fleet": tag}), "*")
    clients = [devices.connect(device_id) for device_id in targets]

    job_id = _job_id("twin")
    request = JobRequest(job_id=job_id, type="scheduleUpdateTwin", query_condition=f"tags.fleet = '{tag}'",
                         update_twin=Twin(etag="*", properties=TwinProperties(desired={"doorLocked": True})),
                         max_execution_time_in_seconds=60)
    job_manager.create_scheduled_job(job_id, request)
    job = _wait_for_job(job_manager, job_id)
    assert job.status == "completed" and job.device_job_statistics.succeeded_count == 2
    for client in clients:
        assert client.patch_received.wait(WAIT)
        assert client.patches[-1]["doorLocked"] is True


def test_future_start_job_waits_then_runs(registry, job_manager, devices):
    device_id = devices.create("future")
    job_id = _job_id("future")
    start = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(seconds=2)  # naive: UTC
    request = JobRequest(job_id=job_id, type="scheduleUpdateTwin", query_condition=f"deviceId = '{device_id}'",
                         update_twin=Twin(etag="*", tags={"later": True}), start_time=start,
                         max_execution_time_in_seconds=60)
    assert job_manager.create_scheduled_job(job_id, request).status == "scheduled"
    job = _wait_for_job(job_manager, job_id)
    assert job.status == "completed"
    assert registry.get_twin(device_id).tags == {"later": True}


def test_cancel_a_scheduled_job(job_manager):
    job_id = _job_id("cancel")
    start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    request = JobRequest(job_id=job_id, type="scheduleDeviceMethod", query_condition="deviceId = 'nobody'",
                         cloud_to_device_method=CloudToDeviceMethod(method_name="reboot", payload=None),
                         start_time=start, max_execution_time_in_seconds=60)
    job_manager.create_scheduled_job(job_id, request)
    with pytest.raises(HttpOperationError) as duplicate:
        job_manager.create_scheduled_job(job_id, request)
    assert _error(duplicate)[0] == 409
    cancelled = job_manager.cancel_scheduled_job(job_id)
    assert cancelled.status == "cancelled"
    assert job_manager.get_scheduled_job(job_id).status == "cancelled"
    # IoT Hub answers a bare array (x-ms-continuation paging), which the Python SDK's model cannot read
    with pytest.raises(DeserializationError):
        job_manager.query_scheduled_jobs(None, "cancelled")
    listed, _ = read_jobs_page(get_jobs_page(job_manager, None, "cancelled", None, 100))
    assert job_id in [item["jobId"] for item in listed]

    with pytest.raises(HttpOperationError) as missing:
        job_manager.get_scheduled_job("no-such-job")
    assert _error(missing)[0] == 404
    bad = JobRequest(job_id="bad-condition", type="scheduleDeviceMethod", query_condition="deviceId =",
                     cloud_to_device_method=CloudToDeviceMethod(method_name="reboot", payload=None))
    with pytest.raises(HttpOperationError) as invalid:
        job_manager.create_scheduled_job("bad-condition", bad)
    assert _error(invalid)[0] == 400


# ---- auth ---------------------------------------------------------------------------------------

def test_wrong_key_and_insufficient_policy_are_refused(service, devices):
    device_id = devices.create("auth")
    wrong_key = service.registry(key=wellknown.POLICIES["service"][0])
    with pytest.raises(HttpOperationError) as refused:
        wrong_key.get_device(device_id)
    status, text = _error(refused)
    assert status == 401 and "IotHubUnauthorizedAccess" in text

    read_only = service.registry("registryRead")
    assert read_only.get_device(device_id).device_id == device_id
    with pytest.raises(HttpOperationError) as no_write:
        read_only.delete_device(device_id)
    assert _error(no_write)[0] == 401
    with pytest.raises(HttpOperationError) as no_connect:
        read_only.invoke_device_method(device_id, CloudToDeviceMethod(method_name="reboot", payload=None))
    assert _error(no_connect)[0] == 401

    service_only = service.registry("service")
    with pytest.raises(HttpOperationError) as no_registry:
        service_only.get_device(device_id)
    assert _error(no_registry)[0] == 401
    assert service_only.get_twin(device_id).device_id == device_id
