"""ServiceFront: REST listener + job scheduler started together, jobs kept in the hub's store."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import pytest

from emulator.certs import ensure_certificates, server_ssl_context
from emulator.hub import Hub
from emulator.rest import ServiceFront
from emulator.store import SqliteStore

from .conftest import API, token


@pytest.fixture
def certificates(tmp_path):
    return ensure_certificates(tmp_path / "certs", ["127.0.0.1"])


def twin_job(job_id: str) -> dict:
    return {"jobId": job_id, "type": "scheduleUpdateTwin", "queryCondition": "deviceId = 'myDeviceId'",
            "updateTwin": {"tags": {"touched": True}, "etag": "*"}}


async def test_jobs_created_over_https_run_and_survive_a_restart(tmp_path, certificates):
    store_dir = tmp_path / "data"
    hub = Hub("localhost", store=SqliteStore.in_directory(store_dir))
    hub.register_well_known()
    front = ServiceFront(hub, None, server_ssl_context(certificates))
    port = await front.start("127.0.0.1", 0)
    trust = ssl.create_default_context(cafile=str(certificates.ca_cert))
    base = f"https://127.0.0.1:{port}/jobs/v2"
    try:
        async with aiohttp.ClientSession() as session:
            async def call(verb: str, path: str, body=None):
                async with session.request(verb, f"{base}/{path}?{API}", json=body, ssl=trust,
                                           headers={"Authorization": token(now=hub.now())}) as response:
                    assert response.status == 200, await response.text()
                    return await response.json()

            await call("PUT", "touch", twin_job("touch"))
            for _ in range(400):  # the running scheduler starts a due job at once; bounded wait
                if (await call("GET", "touch"))["status"] == "completed":
                    break
                await asyncio.sleep(0.025)
            assert (await call("GET", "touch"))["status"] == "completed"
            assert hub.get_twin("myDeviceId")["tags"] == {"touched": True}
    finally:
        await front.stop()
        hub.close()

    reopened = Hub("localhost", store=SqliteStore.in_directory(store_dir))
    again = ServiceFront(reopened, None, None)
    try:
        assert again.scheduler.get("touch")["status"] == "completed"
    finally:
        reopened.close()
