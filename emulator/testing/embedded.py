"""Emulator: the emulator in a background thread of the test process, ready to use in a test.

In the test's own process because that is what a test wants: it starts in a fraction of a second, and the
test can look inside (what a device sent, who is connected). The server runs its own event loop in its
own thread, so the SDK clients of the test (their threads, or the test's event loop) never wait on it and
it never waits on them; the one exception is a call that waits for a device: see invoke_method.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from hubsettings import wellknown

from ..certs import CertificateError
from ..hub import Hub, MethodResult
from ..hub.errors import DeviceNotFound
from ..hub.telemetry import TelemetryMessage
from ..mqtt.server import AddressInUse
from ..server import EmulatorConfig, EmulatorServer, ThreadedEmulator
from ..store import StoreError
from .addresses import START_ATTEMPTS, free_address
from .identity import DeviceIdentity, EmulatorStartError, new_device_id, new_key

T = TypeVar("T")

POLL_SECONDS = 0.02


def _not_on_a_running_loop(what: str, instead: str) -> None:
    """A call that waits for a device must not block the event loop the device client may run on."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"{what} blocks until a device answers, and it was called on a running event loop, "
                       f"which an asyncio device client needs to answer: use `await {instead}` instead")


def _check_deadline(deadline: float, messages: list[TelemetryMessage], count: int, device_id: str | None,
                    timeout: float) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"{len(messages)} of {count} telemetry message(s) from {device_id or 'any device'} "
                           f"arrived within {timeout:g} s")


class Emulator:
    """A local IoT Hub for a test: in memory, on a free loopback address, in a background thread.

    with Emulator() as hub:
        device = hub.create_device()
        # connect a device client with device.connection_string, then e.g.
        result = hub.invoke_method(device.device_id, "reboot", {"delay": 0})

    address: None picks a free 127.0.0.X (so it never meets a user's emulator on 127.0.0.1); an explicit
    address that is taken fails with EmulatorStartError. data_dir: None keeps everything in memory.
    Other keyword arguments are EmulatorConfig fields (throttle, telemetry_capacity, ...).
    """

    def __init__(self, address: str | None = None, *, data_dir: str | Path | None = None,
                 start_timeout: float = 30, **config_options: Any):
        self._address = address
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._start_timeout = start_timeout
        self._options: dict[str, Any] = {"write_discovery": False, **config_options}
        self._threaded: ThreadedEmulator | None = None

    # ---- life cycle ------------------------------------------------------------------------------
    def start(self) -> Emulator:
        """Start and wait until devices and services can connect. Raises EmulatorStartError."""
        if self._threaded is not None:
            raise EmulatorStartError("this emulator is already running")
        if self._address is not None:
            self._threaded = self._start_on(self._address)
            return self
        tried: list[str] = []
        for _ in range(START_ATTEMPTS):
            address = free_address(tried)
            tried.append(address)
            try:
                self._threaded = self._start_on(address)
                return self
            except EmulatorStartError as e:
                if not isinstance(e.__cause__, AddressInUse):
                    raise
        raise EmulatorStartError(f"no free loopback address: the ports were taken on {', '.join(tried)} "
                                 "between checking and binding")

    def _start_on(self, address: str) -> ThreadedEmulator:
        config = EmulatorConfig(address=address, data_dir=self._data_dir, in_memory=self._data_dir is None,
                                **self._options)
        threaded = ThreadedEmulator(config)
        try:
            return threaded.start(self._start_timeout)
        except AddressInUse as e:
            raise EmulatorStartError(f"cannot start the emulator: {e.strerror or e}") from e
        except TimeoutError:
            threaded.stop()
            raise EmulatorStartError(f"the emulator did not start within {self._start_timeout:g} s") from None
        except OSError as e:
            where = f": {e.filename}" if e.filename else ""
            raise EmulatorStartError(f"cannot start the emulator: {e.strerror or e}{where}") from e
        except (StoreError, CertificateError) as e:  # an unusable data directory: their message says which
            raise EmulatorStartError(str(e)) from e

    def stop(self) -> None:
        """Stop listening (connected devices are dropped) and forget everything kept in memory."""
        if self._threaded is not None:
            self._threaded.stop()
            self._threaded = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._threaded is not None

    # ---- where it is and what clients need ---------------------------------------------------------
    @property
    def server(self) -> EmulatorServer:
        """The EmulatorServer (its hub is used through call(); it is not thread-safe)."""
        return self._running().server

    @property
    def address(self) -> str:
        return self.server.config.address

    @property
    def host_name(self) -> str:
        return self.server.host_name

    @property
    def mqtt_port(self) -> int:
        assert self.server.mqtt_port is not None
        return self.server.mqtt_port

    @property
    def rest_port(self) -> int | None:
        """The HTTPS port of the service front (REST, MQTT over WebSockets), as it was bound."""
        return self.server.rest_port

    @property
    def ca_file(self) -> str:
        """The CA certificate that signed the emulator's server certificate (PEM file)."""
        assert self.server.certificates is not None
        return str(self.server.certificates.ca_cert)

    @property
    def ca_pem(self) -> str:
        """The CA certificate's text: what `server_verification_cert=` of the device SDK takes."""
        return Path(self.ca_file).read_text()

    @property
    def service_connection_string(self) -> str:
        """iothubowner's connection string, for the service SDK / CLI."""
        return self.server.info().service_connection_string

    @property
    def event_hub_connection_string(self) -> str | None:
        """The built-in Event Hubs-compatible endpoint's connection string (iothubowner): read telemetry
        with azure-eventhub's EventHubConsumerClient (connection_verify=hub.ca_file). None when the
        emulator runs without its AMQP front (amqp_port=None)."""
        return self.server.event_hub_connection_string()

    def device_connection_string(self, device_id: str = wellknown.DEVICE_ID) -> str:
        return self.call(self.server.device_connection_string, device_id)

    # ---- devices ---------------------------------------------------------------------------------
    def create_device(self, device_id: str | None = None, *, primary_key: str | None = None,
                      status: str = "enabled") -> DeviceIdentity:
        """Register a device (a fresh id and key unless given) and return its identity."""
        device_id = device_id or new_device_id()
        key = primary_key or new_key()
        self.call(lambda: self.hub.create_device(device_id, primary_key=key, status=status))  # type: ignore[arg-type]
        return DeviceIdentity(device_id, key, wellknown.device_connection_string(self.host_name, device_id, key))

    def delete_device(self, device_id: str) -> None:
        """Delete a device (its connection is closed, as IoT Hub does); absent devices are ignored."""
        def delete() -> None:
            try:
                self.hub.delete_device(device_id)
            except DeviceNotFound:
                pass
        self.call(delete)

    def is_connected(self, device_id: str) -> bool:
        return self.call(lambda: self.hub.is_online(device_id))

    def connected_devices(self) -> list[str]:
        return self.call(lambda: sorted(d.device_id for d in self.hub.list_devices() if self.hub.is_online(d.device_id)))

    # ---- what devices sent; what they are asked ----------------------------------------------------
    def telemetry(self, device_id: str | None = None) -> list[TelemetryMessage]:
        """The device-to-cloud messages received so far (the newest telemetry_capacity of them), oldest first."""
        return self.call(self.hub.telemetry.messages, device_id)

    def wait_for_telemetry(self, device_id: str | None = None, count: int = 1,
                           timeout: float = 30) -> list[TelemetryMessage]:
        """Wait until at least `count` messages from the device arrived; returns all of them."""
        _not_on_a_running_loop("wait_for_telemetry", "wait_for_telemetry_async(...)")
        deadline = time.monotonic() + timeout
        while len(messages := self.telemetry(device_id)) < count:
            _check_deadline(deadline, messages, count, device_id, timeout)
            time.sleep(POLL_SECONDS)
        return messages

    async def wait_for_telemetry_async(self, device_id: str | None = None, count: int = 1,
                                       timeout: float = 30) -> list[TelemetryMessage]:
        deadline = time.monotonic() + timeout
        while len(messages := self.telemetry(device_id)) < count:
            _check_deadline(deadline, messages, count, device_id, timeout)
            await asyncio.sleep(POLL_SECONDS)
        return messages

    def invoke_method(self, device_id: str, method_name: str, payload: Any = None, *,
                      response_timeout: float = 30, connect_timeout: float = 0) -> MethodResult:
        """Call a direct method as the service does and wait for the device's answer (.status, .payload).

        Blocks: from an async test whose device client runs on the test's loop, use invoke_method_async.
        Raises hub errors as IoT Hub answers them (DeviceNotOnline when nobody listens, a timeout...)."""
        _not_on_a_running_loop("invoke_method", "invoke_method_async(...)")
        return self._running().invoke_method(device_id, method_name, payload, response_timeout=response_timeout,
                                             connect_timeout=connect_timeout)

    async def invoke_method_async(self, device_id: str, method_name: str, payload: Any = None, *,
                                  response_timeout: float = 30, connect_timeout: float = 0) -> MethodResult:
        threaded = self._running()
        return await asyncio.get_running_loop().run_in_executor(None, lambda: threaded.invoke_method(
            device_id, method_name, payload, response_timeout=response_timeout, connect_timeout=connect_timeout))

    def get_twin(self, device_id: str) -> dict[str, Any]:
        return self._running().get_twin(device_id)

    def patch_desired(self, device_id: str, desired: dict[str, Any]) -> dict[str, Any]:
        return self._running().patch_desired(device_id, desired)

    # ---- running code inside the emulator ----------------------------------------------------------
    @property
    def hub(self) -> Hub:
        """The hub model; not thread-safe: use it through call()."""
        return self._running().hub

    def call(self, function: Callable[..., T], *args: Any, timeout: float = 60, **kwargs: Any) -> T:
        """Call a (synchronous) function on the emulator's thread, e.g. call(hub.get_device, "d1")."""
        return self._running().call(function, *args, timeout=timeout, **kwargs)

    def run(self, coroutine_function: Callable[..., Awaitable[T]], *args: Any, timeout: float = 60,
            **kwargs: Any) -> T:
        """Run a coroutine function on the emulator's loop and wait for its result."""
        return self._running().run(coroutine_function, *args, timeout=timeout, **kwargs)

    def _running(self) -> ThreadedEmulator:
        if self._threaded is None:
            raise RuntimeError("the emulator is not running: call start() or use it in a `with` block")
        return self._threaded

    def __repr__(self) -> str:
        where = f"{self.address}, host name {self.host_name}" if self._threaded else "not running"
        return f"<Emulator {where}>"
