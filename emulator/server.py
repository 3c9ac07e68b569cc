"""EmulatorServer: the embeddable emulator (hub model + store + certificates + MQTT listener + the
service front: HTTPS REST, MQTT over WebSockets and the job scheduler, from emulator/rest).

`await server.start()` / `await server.stop()` inside an event loop (the CLI), or `ThreadedEmulator`
for tests and the demo: it runs the server on its own loop in a background thread, with a readiness
event, and offers the small in-process API (invoke a method, patch desired properties, read a twin).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hubsettings import wellknown
from hubsettings.discovery import EmulatorInfo, discovery_path, emulator_home, remove_discovery, write_discovery

from . import loopback
from .amqp.server import DEFAULT_PORT as AMQP_PORT
from .amqp.event_hubs import event_hub_connection_string
from .hub.telemetry import DEFAULT_CAPACITY as TELEMETRY_CAPACITY
from .amqp.server import AmqpServer
from .certs import CertificatePaths, ensure_certificates, server_ssl_context
from .hub import Hub, MethodResult
from .mqtt.device_front import DeviceFront
from .mqtt.server import MqttServer
from .rest import ServiceFront
from .rest.throttle import Throttle
from .store import SqliteStore

log = logging.getLogger("emulator")
T = TypeVar("T")

HOUSEKEEPING_SECONDS = 0.2  # how often method-call deadlines and token expiries are checked


def default_host_name(address: str) -> str:
    """`localhost` for the default loopback (and wildcard) addresses; otherwise the address itself,
    since only it reaches the emulator (e.g. 127.0.0.5 is not what `localhost` resolves to)."""
    return wellknown.HOST_NAME if address in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "::", "") else address


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


@dataclass
class EmulatorConfig:
    address: str = wellknown.BIND_ADDRESS
    host_name: str | None = None  # None: default_host_name(address)
    mqtt_port: int = wellknown.MQTT_PORT
    # The service front (REST over HTTPS, MQTT over WebSockets, jobs) on IoT Hub's 443; None runs devices only.
    rest_port: int | None = wellknown.REST_PORT
    # Where the service front goes when rest_port is not permitted or taken; None: fail to start instead.
    rest_fallback_port: int | None = wellknown.REST_FALLBACK_PORT
    # The service AMQP front (cloud-to-device messages and their feedback); None: no AMQP listener.
    amqp_port: int | None = AMQP_PORT
    data_dir: Path | None = None  # None: hubsettings.emulator_home()
    in_memory: bool = False
    discovery_file: Path | None = None  # None: hubsettings.discovery_path() (IOTHUB_EMULATOR_DISCOVERY)
    write_discovery: bool = True
    telemetry_capacity: int = TELEMETRY_CAPACITY  # messages kept per partition of the Event Hubs-compatible endpoint
    consumer_groups: tuple[str, ...] = ()  # created beside $Default on the Event Hubs-compatible endpoint
    extra_hosts: tuple[str, ...] = field(default_factory=tuple)  # more names for the server certificate
    # IoT Hub tier (F1, S1, S2, S3, B1..B3) whose service API throttles apply (429); None: no throttling.
    throttle: str | None = None
    throttle_clock: Callable[[], float] | None = None  # tests: None uses time.monotonic

    @property
    def effective_host_name(self) -> str:
        return self.host_name or default_host_name(self.address)


def fallback_note(address: str, port: int, fallback: int, *, taken: bool) -> str:
    """One line: the service front is on the fallback port, which clients need the other one, and the fix."""
    if taken:
        why, fix = f"{address}:{port} is taken by another program", "free it or use another --address"
    else:
        why, fix = f"this user may not bind port {port}", f"allow it with `{loopback.how_to_allow_port_443()}`"
    return (f"HTTPS REST and MQTT over WebSockets are on port {fallback} ({why}): devices using MQTT over "
            f"WebSockets, the Node.js service SDK and az need {port}; {fix}, then restart the emulator.")


class EmulatorServer:
    def __init__(self, config: EmulatorConfig | None = None):
        self.config = config or EmulatorConfig()
        self.hub: Hub | None = None
        self.front: DeviceFront | None = None
        self.certificates: CertificatePaths | None = None
        self.mqtt_port: int | None = None
        self.rest_port: int | None = None
        self.service: ServiceFront | None = None
        self.data_dir: Path | None = None
        self.rest_port_note: str | None = None  # why the service front is not on config.rest_port
        self.discovery_file: Path | None = None
        self._mqtt: MqttServer | None = None
        self._amqp: AmqpServer | None = None
        self.amqp_port: int | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._temp_dir: str | None = None

    @property
    def host_name(self) -> str:
        return self.config.effective_host_name

    async def start(self) -> None:
        """Create or open the data directory, certificates and store, then listen. Raises
        mqtt.server.AddressInUse, store.StoreError or certs.CertificateError with a one-line message."""
        config = self.config
        try:
            if config.in_memory:
                self._temp_dir = tempfile.mkdtemp(prefix="iothub-emulator-")
                self.data_dir = Path(self._temp_dir)
                store = SqliteStore.in_memory()
            else:
                self.data_dir = Path(config.data_dir or emulator_home()).expanduser()
                store = SqliteStore.in_directory(self.data_dir)
            hosts = [self.host_name, config.address, *config.extra_hosts]
            self.certificates = ensure_certificates(self.data_dir / "certs", hosts)
            aliases = (config.address,) if _is_ip(config.address) else ()
            self.hub = Hub(self.host_name, store=store, host_aliases=aliases,
                           telemetry_capacity=config.telemetry_capacity)
            self.hub.register_well_known()
            for group in config.consumer_groups:
                self.hub.telemetry.create_consumer_group(group)
            self.front = DeviceFront(self.hub)
            ssl_context = server_ssl_context(self.certificates)
            self._mqtt = MqttServer(self.front, ssl_context, ca_file=str(self.certificates.ca_cert))
            self.mqtt_port = await self._mqtt.start(config.address, config.mqtt_port)
            if config.rest_port is not None:
                limits = Throttle(config.throttle, config.throttle_clock) if config.throttle else None
                self.service = ServiceFront(self.hub, self.front, ssl_context, limits=limits)
                self.rest_port = await self.service.start(config.address, self._choose_rest_port())
            if config.amqp_port is not None:
                self._amqp = AmqpServer(self.hub, ssl_context)
                self.amqp_port = await self._amqp.start(config.address, config.amqp_port)
        except BaseException:
            await self._release()
            raise
        self._housekeeping = asyncio.create_task(self._expire_deadlines())
        if config.write_discovery:
            self.discovery_file = config.discovery_file or discovery_path()
            write_discovery(self.info(), self.discovery_file)
        log.info("listening for devices (MQTT/TLS) on %s:%s as %s", config.address, self.mqtt_port, self.host_name)
        if self.rest_port is not None:
            log.info("listening for services (HTTPS REST, MQTT over WebSockets) on %s:%s", config.address,
                     self.rest_port)
        if self.rest_port_note:
            log.warning("%s", self.rest_port_note)
        if self.amqp_port is not None:
            log.info("listening for services (AMQP/TLS: cloud-to-device messages, feedback) on %s:%s",
                     config.address, self.amqp_port)
        if self.service is not None and self.service.limits is not None:
            log.info("throttling the service API with IoT Hub %s tier limits (429 ThrottlingException)",
                     self.service.limits.tier)

    def _choose_rest_port(self) -> int:
        """config.rest_port when it can be bound, else the fallback port (with rest_port_note saying why
        and what it costs). A port that fails for another reason is left to fail with its own message."""
        config = self.config
        assert config.rest_port is not None
        if config.rest_fallback_port is None or config.rest_port == 0:
            return config.rest_port
        problem = loopback.bind_error(config.address, config.rest_port)
        if problem not in (errno.EACCES, errno.EPERM, errno.EADDRINUSE):
            return config.rest_port
        self.rest_port_note = fallback_note(config.address, config.rest_port, config.rest_fallback_port,
                                           taken=problem == errno.EADDRINUSE)
        return config.rest_fallback_port

    async def _expire_deadlines(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            # Each step on its own: a bug in one must neither kill this task (method deadlines and token
            # expiries would silently stop) nor skip the other.
            if self.hub:
                try:
                    self.hub.expire_due()
                except Exception:
                    log.exception("housekeeping: expiring method calls failed")
            if self.front:
                try:
                    self.front.expire_tokens()
                except Exception:
                    log.exception("housekeeping: closing connections with expired tokens failed")

    async def stop(self) -> None:
        if self._housekeeping:
            self._housekeeping.cancel()
            self._housekeeping = None
        if self.discovery_file:
            remove_discovery(self.discovery_file, pid=os.getpid())
            self.discovery_file = None
        await self._release()
        log.info("stopped")

    async def _release(self) -> None:
        if self.front is not None:
            self.front.discard_wills()  # the hub itself is stopping: its own hang-ups are no device's failure
        if self._amqp:
            await self._amqp.stop()
            self._amqp = None
        if self.service:
            await self.service.stop()  # before the hub closes: running jobs are saved through it
            self.service = None
        if self._mqtt:
            await self._mqtt.stop()
            self._mqtt = None
        if self.hub:
            self.hub.close()
            self.hub = None
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    # ---- what clients need to know ---------------------------------------------------------------
    def info(self) -> EmulatorInfo:
        assert self.certificates is not None and self.mqtt_port is not None
        host = self.host_name
        rest_port = self.rest_port if self.rest_port is not None else (self.config.rest_port or wellknown.REST_PORT)
        # On 443 the connection string has no port, exactly as Azure's; elsewhere HostName carries it.
        return EmulatorInfo(
            host_name=host, mqtt_address=self.config.address, mqtt_port=self.mqtt_port,
            rest_address=self.config.address, rest_port=rest_port,
            ca_file=str(self.certificates.ca_cert),
            service_connection_string=wellknown.service_connection_string(host, rest_port),
            device_connection_strings={wellknown.DEVICE_ID: wellknown.device_connection_string(host)},
            provisioning_host=host, provisioning_id_scope=wellknown.DPS_ID_SCOPE,
            provisioning_group_key=wellknown.DPS_GROUP_KEY,
            data_dir=None if self.config.in_memory else str(self.data_dir), pid=os.getpid(),
            event_hub_connection_string=self.event_hub_connection_string() or "")

    def event_hub_connection_string(self, policy: str = wellknown.OWNER_POLICY) -> str | None:
        """The Event Hubs-compatible connection string (None without the AMQP front)."""
        if self.amqp_port is None:
            return None
        return event_hub_connection_string(self.host_name, self.amqp_port, policy, wellknown.POLICIES[policy][0])

    def device_connection_string(self, device_id: str) -> str:
        """A connection string for a registered device (its primary key), for tests and the demo."""
        assert self.hub is not None
        device = self.hub.get_device(device_id)
        return wellknown.device_connection_string(self.host_name, device_id, device.primary_key)

    # ---- in-process API (until the REST front exists) --------------------------------------------
    async def invoke_method(self, device_id: str, method_name: str, payload: Any = None, *,
                            response_timeout: float = 30, connect_timeout: float = 0) -> MethodResult:
        assert self.hub is not None
        return await self.hub.invoke_method(device_id, method_name, payload, response_timeout=response_timeout,
                                            connect_timeout=connect_timeout)

    async def patch_desired(self, device_id: str, desired: dict[str, Any]) -> dict[str, Any]:
        assert self.hub is not None
        return self.hub.patch_desired(device_id, desired)


class ThreadedEmulator:
    """An EmulatorServer on its own event loop in a background thread (tests, the demo).

    with ThreadedEmulator(EmulatorConfig(address="127.0.0.7", in_memory=True)) as emulator:
        emulator.invoke_method("myDeviceId", "reboot", {"delay": 0})
    """

    def __init__(self, config: EmulatorConfig | None = None):
        self.server = EmulatorServer(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    def start(self, timeout: float = 30) -> ThreadedEmulator:
        """Start and wait until the listener is up; re-raises a start-up failure here."""
        self._thread = threading.Thread(target=self._run, name="iothub-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the emulator did not start in time")
        if self._error:
            self._thread.join(timeout)
            raise self._error
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as e:  # handed to the starting thread
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.stop()

    def stop(self, timeout: float = 30) -> None:
        if self._loop and self._stop and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)

    def __enter__(self) -> ThreadedEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- calls into the loop thread --------------------------------------------------------------
    def run(self, coroutine_function: Callable[..., Awaitable[T]], *args: Any, timeout: float = 60,
            **kwargs: Any) -> T:
        """Run server code on the emulator's loop and wait for its result."""
        assert self._loop is not None
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine_function(*args, **kwargs), self._loop)
        return future.result(timeout)

    def call(self, function: Callable[..., T], *args: Any, timeout: float = 60, **kwargs: Any) -> T:
        """Call a (synchronous) hub function on the emulator's loop thread."""
        async def wrapper() -> T:
            return function(*args, **kwargs)
        return self.run(wrapper, timeout=timeout)

    @property
    def hub(self) -> Hub:
        """The hub, for use via call(); it is not thread-safe."""
        assert self.server.hub is not None
        return self.server.hub

    def invoke_method(self, device_id: str, method_name: str, payload: Any = None, *,
                      response_timeout: float = 30, connect_timeout: float = 0) -> MethodResult:
        return self.run(self.server.invoke_method, device_id, method_name, payload,
                        response_timeout=response_timeout, connect_timeout=connect_timeout,
                        timeout=response_timeout + connect_timeout + 30)

    def patch_desired(self, device_id: str, desired: dict[str, Any]) -> dict[str, Any]:
        return self.run(self.server.patch_desired, device_id, desired)

    def get_twin(self, device_id: str) -> dict[str, Any]:
        return self.call(lambda: self.hub.get_twin(device_id))
