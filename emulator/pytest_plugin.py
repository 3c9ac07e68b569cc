"""pytest plugin (entry point `iothub`): an IoT hub for your tests, the emulator unless told otherwise.

- `iothub` (session): an emulator.testing.Emulator in memory on a free loopback address, with the SDKs'
  trust (SSL_CERT_FILE, REQUESTS_CA_BUNDLE, NODE_EXTRA_CA_CERTS) set to its CA while it lives; under
  pytest-xdist each worker has its own. With --iothub-connection-string (or $IOTHUB_TEST_CONNECTION_STRING)
  it is a RealHub on that hub instead: no emulator, no trust change.
- `iothub_device`: a fresh device identity per test (.device_id, .connection_string), deleted afterwards;
  a test that leaves it connected gets an error naming it.

Nothing here is imported or started unless a test asks for one of these fixtures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

CONNECTION_STRING_ENV = "IOTHUB_TEST_CONNECTION_STRING"
DISCONNECT_GRACE_SECONDS = 5.0  # a client shut down as the test ends: its disconnect may still be in flight


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("iothub", "IoT Hub (emulator.pytest_plugin)")
    group.addoption("--iothub-connection-string", default=None, metavar="CONNECTION_STRING",
                    help="Run the `iothub` fixtures against this real IoT hub (a service connection string "
                         f"with registry write rights) instead of a local emulator. Default: ${CONNECTION_STRING_ENV}.")


def _real_hub_connection_string(config: pytest.Config) -> str | None:
    return config.getoption("iothub_connection_string", None) or os.environ.get(CONNECTION_STRING_ENV) or None


def pytest_configure(config: pytest.Config) -> None:
    text = _real_hub_connection_string(config)
    if text:  # a bad string stops the run at once, in one line, rather than erroring every test
        from hubsettings import ConnectionStringError, parse_connection_string
        try:
            parse_connection_string(text, expect="service", what="--iothub-connection-string")
        except ConnectionStringError as e:
            raise pytest.UsageError(str(e)) from None


@pytest.fixture(scope="session")
def iothub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The hub of this test session (of this xdist worker): an Emulator, or a RealHub (see the module)."""
    text = _real_hub_connection_string(request.config)
    if text:
        from emulator.testing import RealHub
        with RealHub(text) as real_hub:
            yield real_hub
        return
    from emulator.testing import Emulator, EmulatorStartError, trusting
    try:
        emulator = Emulator().start()
    except EmulatorStartError as e:
        pytest.fail(f"iothub: {e}", pytrace=False)
    try:
        with trusting(emulator.ca_file, tmp_path_factory.mktemp("iothub-trust")):
            yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def iothub_device(iothub: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A device registered for this test only (fresh id and key); deleted when the test ends."""
    from emulator.testing import Emulator
    from emulator.testing.identity import new_device_id
    device = iothub.create_device(new_device_id("pytest"))
    yield device
    left_connected = isinstance(iothub, Emulator) and _still_connected(iothub, device.device_id)
    iothub.delete_device(device.device_id)  # also drops a connection the test left open
    if left_connected:
        pytest.fail(f"{request.node.nodeid} left device {device.device_id} connected: shut its client down "
                    "before the test ends (client.shutdown() in a finally block or a fixture)", pytrace=False)


def _still_connected(emulator: Any, device_id: str) -> bool:
    deadline = time.monotonic() + DISCONNECT_GRACE_SECONDS
    while emulator.is_connected(device_id):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)
    return False
