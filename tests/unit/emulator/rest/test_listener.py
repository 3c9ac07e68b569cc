"""The HTTPS listener: TLS with the emulator's certificates on a real loopback socket; a taken port
is one clear AddressInUse error."""

from __future__ import annotations

import ssl

import aiohttp
import pytest

from emulator.certs import ensure_certificates, server_ssl_context
from emulator.mqtt.server import AddressInUse
from emulator.rest import create_app, start_rest_server

from .conftest import API, token


@pytest.fixture
def certificates(tmp_path):
    return ensure_certificates(tmp_path / "certs", ["127.0.0.1"])


async def test_serves_https_with_the_emulator_certificate(hub, clock, certificates):
    server = await start_rest_server(create_app(hub), "127.0.0.1", 0, server_ssl_context(certificates))
    try:
        trust = ssl.create_default_context(cafile=str(certificates.ca_cert))
        async with aiohttp.ClientSession() as session:
            url = f"https://127.0.0.1:{server.port}/devices/myDeviceId?{API}"
            async with session.get(url, ssl=trust, headers={"Authorization": token(now=clock())}) as response:
                assert response.status == 200
                assert (await response.json())["deviceId"] == "myDeviceId"
    finally:
        await server.stop()


async def test_a_taken_port_is_address_in_use(hub, certificates):
    context = server_ssl_context(certificates)
    first = await start_rest_server(create_app(hub), "127.0.0.1", 0, context)
    try:
        with pytest.raises(AddressInUse) as taken:
            await start_rest_server(create_app(hub), "127.0.0.1", first.port, context)
        assert f"127.0.0.1:{first.port} is already in use" in str(taken.value)
    finally:
        await first.stop()
