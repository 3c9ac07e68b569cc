"""Jobs survive an emulator restart (`python -m emulator` subprocess, same data dir): finished and
scheduled jobs come back as they were; a job that was running ends `failed` with a failureReason
instead of re-sending its direct methods."""

from __future__ import annotations

import datetime as dt

import pytest
from azure.iot.device import IoTHubDeviceClient
from azure.iot.hub import IoTHubJobManager
from azure.iot.hub.models import CloudToDeviceMethod, JobRequest, Twin

from hubsettings import wellknown
from tests.e2e.support import wait_for

pytestmark = pytest.mark.e2e

WAIT = 30.0


def _job_manager(emulator_process) -> IoTHubJobManager:
    manager = IoTHubJobManager.from_connection_string(emulator_process.service_connection_string)
    manager.protocol.config.connection.verify = str(emulator_process.data_dir / "certs" / "ca.pem")
    return manager


def test_jobs_survive_a_restart(emulator_process):
    emulator_process.start()
    jobs = _job_manager(emulator_process)
    condition = f"deviceId = '{wellknown.DEVICE_ID}'"

    jobs.create_scheduled_job("done", JobRequest(
        job_id="done", type="scheduleUpdateTwin", query_condition=condition,
        update_twin=Twin(etag="*", tags={"restarted": False}), max_execution_time_in_seconds=60))
    wait_for(lambda: jobs.get_scheduled_job("done").status == "completed", timeout=WAIT, interval=0.1,
             what="the twin job to complete")

    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    jobs.create_scheduled_job("later", JobRequest(
        job_id="later", type="scheduleDeviceMethod", query_condition=condition, start_time=later,
        cloud_to_device_method=CloudToDeviceMethod(method_name="reboot", payload=None),
        max_execution_time_in_seconds=60))

    # A device that never answers keeps a method job running until the emulator stops.
    device = IoTHubDeviceClient.create_from_connection_string(
        wellknown.device_connection_string(emulator_process.host_name),
        server_verification_cert=emulator_process.ca_pem)
    device.on_method_request_received = lambda request: None
    try:
        device.connect()
        jobs.create_scheduled_job("interrupted", JobRequest(
            job_id="interrupted", type="scheduleDeviceMethod", query_condition=condition,
            cloud_to_device_method=CloudToDeviceMethod(method_name="lockDoor", payload=None,
                                                       response_timeout_in_seconds=300),
            max_execution_time_in_seconds=600))
        wait_for(lambda: jobs.get_scheduled_job("interrupted").device_job_statistics.running_count == 1,
                 timeout=WAIT, interval=0.1, what="the method job to be running")
    finally:
        device.shutdown()

    assert emulator_process.stop() == 0
    emulator_process.start()
    jobs = _job_manager(emulator_process)

    done = jobs.get_scheduled_job("done")
    assert done.status == "completed" and done.device_job_statistics.succeeded_count == 1
    assert jobs.get_scheduled_job("later").status == "scheduled"
    interrupted = jobs.get_scheduled_job("interrupted")
    assert interrupted.status == "failed"
    assert "restarted while the job was running" in interrupted.failure_reason
    assert interrupted.device_job_statistics.failed_count == 1
    assert jobs.cancel_scheduled_job("later").status == "cancelled"
