"""The AMQP listener starts and stops with the emulator, and a taken port fails loudly, naming AMQP."""

import socket

import pytest

from emulator.loopback import free_loopback_address
from emulator.mqtt.server import AddressInUse
from emulator.server import EmulatorConfig, EmulatorServer


async def test_taken_amqp_port_is_one_clear_error_and_nothing_keeps_listening():
    address = free_loopback_address((8883, 9443, 5671), fall_back_to_127_0_0_1=True)
    with socket.socket() as taken:
        taken.bind((address, 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = EmulatorServer(EmulatorConfig(address=address, mqtt_port=0, rest_port=0, amqp_port=port,
                                               in_memory=True, write_discovery=False))
        with pytest.raises(AddressInUse) as refused:
            await server.start()
    assert f"{address}:{port} (AMQP) is already in use" in str(refused.value)
    assert "--amqp-port" in str(refused.value)
    assert server.hub is None  # released: the MQTT and REST listeners it had opened are closed again


async def test_amqp_port_none_runs_without_the_listener():
    server = EmulatorServer(EmulatorConfig(address="127.0.0.1", mqtt_port=0, rest_port=0, amqp_port=None,
                                           in_memory=True, write_discovery=False))
    await server.start()
    try:
        assert server.amqp_port is None
    finally:
        await server.stop()


async def test_port_zero_binds_a_free_port():
    server = EmulatorServer(EmulatorConfig(address="127.0.0.1", mqtt_port=0, rest_port=0, amqp_port=0,
                                           in_memory=True, write_discovery=False))
    await server.start()
    try:
        assert server.amqp_port
        with socket.create_connection(("127.0.0.1", server.amqp_port), timeout=5):
            pass
    finally:
        await server.stop()
