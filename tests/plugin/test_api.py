"""emulator.testing against real sockets: start, bad addresses, what is left after stop."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest
from azure.iot.device import Message, MethodResponse
from azure.iot.device.aio import IoTHubDeviceClient

from emulator import loopback
from emulator.testing import Emulator, EmulatorProcess, EmulatorStartError, trusting
from emulator.testing import embedded, process
from emulator.testing.addresses import free_address
from hubsettings import wellknown
from tests.e2e.support import something_listening_on

pytestmark = pytest.mark.e2e


def emulator_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "iothub-emulator"]


@pytest.fixture
def taken_address():
    """A free 127.0.0.X whose MQTT port something else then listens on."""
    address = loopback.free_loopback_address(tries=30)
    with something_listening_on(address, wellknown.MQTT_PORT):
        yield address


def test_start_gives_what_clients_need_and_stop_leaves_nothing():
    with Emulator() as hub:
        address, data_dir = hub.address, hub.server.data_dir
        assert hub.address.startswith("127.0.0.")
        assert hub.service_connection_string.startswith(f"HostName={hub.host_name}")
        assert "BEGIN CERTIFICATE" in hub.ca_pem
        assert hub.event_hub_connection_string.startswith(f"Endpoint=sb://{hub.host_name}/;")
        assert hub.server.discovery_file is None  # never the user's discovery file
        device = hub.create_device()
        assert device.connection_string == (f"HostName={hub.host_name};DeviceId={device.device_id};"
                                            f"SharedAccessKey={device.primary_key}")
        assert device.primary_key not in repr(device)
    assert emulator_threads() == []
    assert loopback.ports_free(address, loopback.EMULATOR_PORTS)
    assert not data_dir.exists()  # in memory: the certificates' temporary directory is gone too


def test_an_address_in_use_is_one_clear_error_and_leaves_nothing_running(taken_address):
    with pytest.raises(EmulatorStartError) as error:
        Emulator(taken_address).start()
    assert str(error.value) == (f"cannot start the emulator: {taken_address}:{wellknown.MQTT_PORT} is already "
                                "in use (another emulator or program listens there); stop it or choose another "
                                "--address")
    assert emulator_threads() == []


def test_a_second_emulator_on_the_same_address_is_refused():
    with Emulator() as first:
        with pytest.raises(EmulatorStartError, match="already in use"):
            Emulator(first.address).start()
        assert first.create_device().device_id  # the first one is unharmed


def test_a_picked_address_taken_before_binding_is_replaced(taken_address, monkeypatch):
    """Two xdist workers may pick the same free address at once: the loser tries another."""
    picks = iter([taken_address])
    monkeypatch.setattr(embedded, "free_address", lambda exclude=(): next(picks, None) or free_address(exclude))
    with Emulator() as hub:
        assert hub.address != taken_address
    assert next(picks, None) is None  # it was offered the taken one first


def test_a_blocking_call_on_a_running_loop_is_refused_and_the_async_form_works(tmp_path):
    async def scenario(hub: Emulator, device) -> None:
        client = IoTHubDeviceClient.create_from_connection_string(device.connection_string)

        async def on_method(request):
            await client.send_method_response(MethodResponse.create_from_method_request(request, 200, "done"))

        client.on_method_request_received = on_method
        await client.connect()
        try:
            with pytest.raises(RuntimeError, match=r"use `await invoke_method_async\(\.\.\.\)` instead"):
                hub.invoke_method(device.device_id, "reboot")
            result = await hub.invoke_method_async(device.device_id, "reboot")
            await client.send_message(Message("hello"))
            [message] = await hub.wait_for_telemetry_async(device.device_id)
        finally:
            await client.shutdown()
        assert (result.status, result.payload, message.body) == (200, "done", b"hello")

    with Emulator() as hub, trusting(hub.ca_file, tmp_path):
        asyncio.run(scenario(hub, hub.create_device()))


def test_waiting_for_telemetry_that_never_comes_says_what_was_missing():
    with Emulator() as hub:
        device = hub.create_device()
        with pytest.raises(TimeoutError, match=f"0 of 1 telemetry message\\(s\\) from {device.device_id}"):
            hub.wait_for_telemetry(device.device_id, timeout=0.2)


def test_trusting_restores_the_environment_even_when_the_block_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", "/mine.pem")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    with pytest.raises(ZeroDivisionError), trusting(ca, tmp_path) as bundle:
        assert os.environ["SSL_CERT_FILE"] == os.environ["REQUESTS_CA_BUNDLE"] == str(bundle)
        assert bundle.read_text().endswith(ca.read_text())
        1 / 0
    assert os.environ["SSL_CERT_FILE"] == "/mine.pem"
    assert "REQUESTS_CA_BUNDLE" not in os.environ


def test_a_process_restarts_on_its_data_and_reports_a_clean_stop(tmp_path):
    emulator = EmulatorProcess(data_dir=tmp_path / "data").start()
    try:
        address = emulator.address
        assert emulator.service_connection_string.startswith(f"HostName={emulator.host_name}")
        assert Path(emulator.ca_file).is_file()
        assert emulator.stop() == 0
        assert not emulator.discovery_file.exists()
        emulator.kill()  # already stopped: nothing to do
        emulator.start()
        assert emulator.address == address and emulator.info.pid == emulator.process.pid
        emulator.kill()
        assert emulator.process.returncode == -9
    finally:
        emulator.close()


def test_a_process_on_a_taken_address_fails_with_the_emulator_s_own_line(taken_address, tmp_path):
    with pytest.raises(EmulatorStartError) as error:
        EmulatorProcess(taken_address, tmp_path / "data").start()
    assert f"exited with 3: Error: {taken_address}:{wellknown.MQTT_PORT} is already in use" in str(error.value)


def test_a_process_whose_picked_address_is_taken_tries_another(taken_address, monkeypatch):
    picks = iter([taken_address])
    monkeypatch.setattr(process, "free_address", lambda exclude=(): next(picks, None) or free_address(exclude))
    with EmulatorProcess() as emulator:
        assert emulator.address != taken_address
        temp_dir = emulator.data_dir
    assert next(picks, None) is None  # it was offered the taken one first
    assert emulator.process.returncode == 0 and not temp_dir.exists()


def test_an_unusable_data_directory_is_one_clear_error(tmp_path):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    with pytest.raises(EmulatorStartError) as error:
        Emulator(data_dir=not_a_directory).start()
    assert str(not_a_directory) in str(error.value)
    assert emulator_threads() == []
