"""One device's life: provision or connect, attach handlers, report, serve, shut down.

Every SDK handler is a thin function that hands the work to this program's event loop and returns at
once (the SDK calls handlers from its own threads). On the loop each method call and each desired
patch runs as its own task, and slow work (a reboot) is a follow-up task, so nothing waits for
anything else. Many devices share one loop (--count).
"""

from __future__ import annotations

import asyncio
import json
import platform
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from azure.iot.device import Message, MethodResponse

from hubsettings import DeviceSettings

from . import __version__, cloud_messages, methods, properties, telemetry
from .connecting import Backoff, with_backoff
from .errors import SettingsProblem
from .eventlog import EventLog, utc_now
from .provisioning import provision
from .sdk import ClientFactory, DeviceClient, HubIdentity, describe_error, refuses_credentials

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RunOptions:
    methods: methods.MethodConfig = field(default_factory=methods.MethodConfig)
    telemetry: bool = True
    telemetry_interval: float = 10.0
    backoff: Backoff = field(default_factory=Backoff)
    operation_timeout: float = 30.0  # twin GET/PATCH have no timeout in the SDK: never hang on one
    shutdown_timeout: float = 10.0


def static_properties() -> dict[str, Any]:
    """Reported once at start, as the IoT Central tutorial's device does."""
    return {"swVersion": __version__, "processorArchitecture": platform.machine() or "unknown",
            "state": "true", "rebootState": "running"}


def emulator_hint(settings: DeviceSettings) -> str:
    """What to do when the hub cannot be reached, for the final error line."""
    if settings.is_emulator and not settings.emulator_running:
        return ("The local emulator does not seem to be running: start it with `iothub-emulator` in "
                "another terminal, or set IOTHUB_DEVICE_CONNECTION_STRING (or the PROVISIONING_* "
                "settings) to use a real IoT hub")
    if settings.is_emulator:
        return "Is the local emulator (`iothub-emulator`) still running?"
    return "Check the host name, the network and any firewall (MQTT uses TCP port 8883)"


class DeviceAgent:
    """One simulated device: its SDK client, its handlers and its state."""

    def __init__(self, settings: DeviceSettings, options: RunOptions, factory: ClientFactory,
                 log: EventLog, *, ca_pem: str | None = None, sleep: Sleep = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = utc_now, rng: random.Random | None = None):
        self.settings = settings
        self.options = options
        self.device_id = settings.device_id
        self.desired_values: dict[str, Any] = {}
        self._factory = factory
        self._log = log
        self._ca_pem = ca_pem
        self._sleep = sleep
        self._clock = clock
        self._now = now
        self._sensor = telemetry.SensorSimulator(rng or random.Random())
        self._client: DeviceClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()  # handler tasks (methods, patches, twin reads)
        self._work: dict[str, asyncio.Task] = {}  # follow-ups by key (reboot, door, diagnostics)
        self._telemetry: asyncio.Task | None = None
        self._desired_lock = asyncio.Lock()
        self._desired_version: int | None = None
        self._property_versions: dict[str, int] = {}
        self._ready = False
        self._stopping = False
        self._stopped = False
        self._connected: bool | None = None
        self.host_name: str | None = None
        # Set when the hub refused this device's credentials after it had connected: the SDK never
        # reconnects after that, so whoever runs the device stops it (device/runner.py).
        self.credentials_refused = asyncio.Event()
        self.refusal_reason: str | None = None

    # --- life cycle -------------------------------------------------------------------------------

    def say(self, message: str, **data: Any) -> None:
        self._log.event(self.device_id, message, **data)

    async def start(self) -> None:
        """Provision if needed, connect (with backoff), attach handlers, report, read the twin."""
        self._loop = asyncio.get_running_loop()
        identity = await self._identity()
        self.device_id = identity.device_id
        self.host_name = identity.host_name
        client = self._factory.hub_client(identity, self._ca_pem)
        self._client = client
        # Not receive handlers: setting these enables no feature, so they may precede connect().
        client.on_connection_state_change = self._on_connection_state_change
        client.on_background_exception = self._on_background_exception
        await with_backoff(client.connect, what="connect", target=f"IoT hub {identity.host_name}",
                           backoff=self.options.backoff, say=self.say,
                           hint=emulator_hint(self.settings), sleep=self._sleep, clock=self._clock)
        self._set_connected(True)
        # Receive handlers only once connected: the SDK's setter subscribes (and would auto-connect
        # outside the retry above). The SDK's setter blocks until subscribed, hence the thread; the
        # fleet engine's clients subscribe when they connect and say so.
        if getattr(client, "handler_setters_block", True):
            await asyncio.to_thread(self._attach_receive_handlers, client)
        else:
            self._attach_receive_handlers(client)
        await self._report(static_properties())
        await self.read_twin("start")
        if self.options.telemetry:
            self._telemetry = asyncio.get_running_loop().create_task(self._send_telemetry())
        self._ready = True
        self.say("ready: answering " + ", ".join(methods.METHOD_NAMES) +
                 (f"; telemetry every {self.options.telemetry_interval:g} s" if self.options.telemetry
                  else ""))

    async def stop(self) -> None:
        """Cancel running work and shut the SDK client down (bounded in time). Only the first call
        does anything (a device whose credentials were refused is stopped early, then with the rest)."""
        if self._stopped:
            return
        self._stopped = self._stopping = True
        pending = list(self._tasks) + list(self._work.values()) + ([self._telemetry] if self._telemetry else [])
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._client is None:
            return
        try:
            await asyncio.wait_for(self._client.shutdown(), timeout=self.options.shutdown_timeout)
        except Exception as e:  # noqa: BLE001 - shutting down anyway; say why it was not clean
            self.say(f"shutdown was not clean: {describe_error(e) or type(e).__name__}")
        else:
            if self._connected:
                self._set_connected(False)

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def connected(self) -> bool:
        return bool(self._connected)

    async def drain(self) -> None:
        """Wait until every handler task started so far has finished (tests, orderly stop)."""
        while running := [t for t in self._tasks if not t.done()]:
            await asyncio.gather(*running, return_exceptions=True)

    def busy(self) -> frozenset[str]:
        return frozenset(key for key, task in self._work.items() if not task.done())

    async def _identity(self) -> HubIdentity:
        cs = self.settings.connection_string
        if cs is not None:
            return HubIdentity(host_name=cs.host_name, device_id=cs.device_id or "",
                               connection_string=cs.raw)
        prov = self.settings.provisioning
        if prov is None:
            raise SettingsProblem("no device connection string and no DPS settings")
        self.say(f"provisioning through DPS {prov.host} (id scope {prov.id_scope})")
        identity = await provision(prov, self._ca_pem, self._factory, backoff=self.options.backoff,
                                   say=self.say, hint=emulator_hint(self.settings),
                                   sleep=self._sleep, clock=self._clock)
        self.say(f"provisioned: assigned to {identity.host_name} as {identity.device_id}")
        return identity

    def _attach_receive_handlers(self, client: DeviceClient) -> None:
        client.on_method_request_received = self._on_method_request
        client.on_twin_desired_properties_patch_received = self._on_desired_patch
        client.on_message_received = self._on_cloud_message

    # --- SDK handlers: called from SDK threads; they hand over to the loop and return at once -----

    def _on_method_request(self, request: Any) -> None:
        self._submit(lambda: self.handle_method(request))

    def _on_desired_patch(self, patch: dict[str, Any]) -> None:
        self._submit(lambda: self.handle_desired_patch(patch))

    def _on_cloud_message(self, message: Any) -> None:
        line, data = cloud_messages.describe(message)
        self.say(line, **data)  # EventLog is thread-safe: printed straight from the SDK's thread

    def _on_connection_state_change(self) -> None:
        connected = bool(self._client and self._client.connected)
        self._call_on_loop(self._set_connected, connected)

    def _on_background_exception(self, error: BaseException) -> None:
        self._call_on_loop(self._background_error, error)

    def _background_error(self, error: BaseException) -> None:
        # Before the first connection the connect attempt lines already say what went wrong.
        if self._connected is None or self._stopping:
            return
        if refuses_credentials(error):
            # The SDK stops reconnecting after this: without a word (and a stop) the listener would
            # sit there, looking alive, forever.
            if self.credentials_refused.is_set():
                return
            self.refusal_reason = describe_error(error)
            self.say(f"the hub refused this device's credentials ({self.refusal_reason}): was it deleted, "
                     "disabled or given new keys? The SDK does not retry this: stopping this device")
            self.credentials_refused.set()
        else:
            self.say(f"background error: {describe_error(error)}")

    def refusal_message(self) -> str:
        """The final error line when the hub refused this device's credentials after it had connected."""
        return (f"IoT hub {self.host_name} refused the device's credentials on a reconnect "
                f"({self.refusal_reason}): was the device deleted, disabled or given new keys? "
                "Fix that, then start the listener again")

    def _call_on_loop(self, function: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            if _running_loop() is loop:  # the fleet engine calls in from the loop itself: no wake-up needed
                loop.call_soon(function, *args)
            else:
                loop.call_soon_threadsafe(function, *args)
        except RuntimeError:  # the loop closed while the SDK was still calling in: nothing to do
            pass

    def _submit(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._call_on_loop(lambda: self._spawn(make()))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        if self._stopping:
            coroutine.close()  # arrived during shutdown: not started
            return
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _set_connected(self, connected: bool) -> None:
        if connected == self._connected or (self._connected is None and not connected):
            return  # no change, or a failed first connect (its attempt line says it already)
        previous, self._connected = self._connected, connected
        if connected:
            self.say("connected" if previous is None else "reconnected")
            if self._ready and previous is False:
                # Desired changes made while the connection was down are applied now.
                self._spawn(self.read_twin("reconnect"))
        elif self._stopping:
            self.say("disconnected")
        else:
            self.say("connection lost; the SDK is reconnecting")

    # --- the work ---------------------------------------------------------------------------------

    async def handle_method(self, request: Any) -> None:
        name, payload = request.name, request.payload
        self.say(f"method {name} received" + (f" payload {_short_json(payload)}" if payload not in (None, "") else ""),
                 method=name)
        try:
            try:
                result = methods.handle(methods.MethodCall(name, payload, self.busy()), self._now(),
                                        self.options.methods)
            except Exception as e:  # noqa: BLE001 - the caller must get an answer, not a 504
                result = methods.MethodResult(500, {"Response": f"internal error: {describe_error(e)}"})
            # Claim the follow-up before the first await, so a second call sees it as busy.
            report_sent = asyncio.Event()
            for key in result.cancels:
                self._cancel_work(key)
            if result.follow_up:
                self._start_follow_up(result.follow_up, report_sent)
            try:
                response = MethodResponse.create_from_method_request(request, result.status, result.payload)
                await self._client.send_method_response(response)
                detail = f" ({result.detail})" if result.detail else ""
                self.say(f"method {name} -> {result.status}{detail}", method=name, status=result.status)
                if result.reported:
                    await self._report(result.reported)
            finally:
                report_sent.set()
        except Exception as e:  # noqa: BLE001 - a handler must never die silently
            self.say(f"method {name} failed: {describe_error(e)}", method=name)

    async def handle_desired_patch(self, patch: dict[str, Any]) -> None:
        version = properties.version_of(patch)
        shown = {k: v for k, v in patch.items() if not k.startswith("$")}
        self.say(f"desired patch v{version}: {_short_json(shown)}", version=version)
        async with self._desired_lock:
            if version is not None and self._desired_version is not None and version <= self._desired_version:
                self.say(f"desired patch v{version} already applied (twin read at v{self._desired_version})")
                return
            await self._apply_desired(properties.handle_patch(patch))

    async def read_twin(self, why: str) -> None:
        """Read the twin and apply desired properties changed while the device was offline."""
        try:
            twin = await asyncio.wait_for(self._client.get_twin(), timeout=self.options.operation_timeout)
        except Exception as e:  # noqa: BLE001 - keep serving methods; the next reconnect retries
            self.say(f"twin read ({why}) failed: {describe_error(e) or type(e).__name__}")
            return
        async with self._desired_lock:
            result = properties.reconcile(twin)
            # A patch newer than this twin may have arrived meanwhile: keep what it set.
            newer = {name for name, v in self._property_versions.items()
                     if result.version is not None and v > result.version}
            if newer:
                result = properties.DesiredResult(
                    result.version, tuple(u for u in result.updates if u.name not in newer),
                    {k: v for k, v in result.reported.items() if k not in newer})
            acknowledged = sum(1 for u in result.updates if u.acknowledged)
            self.say(f"twin read ({why}): desired v{result.version}, {len(result.updates)} "
                     f"propert{'y' if len(result.updates) == 1 else 'ies'}, {acknowledged} to acknowledge",
                     version=result.version)
            await self._apply_desired(result, quiet_restored=why != "start")

    async def _apply_desired(self, result: properties.DesiredResult, quiet_restored: bool = False) -> None:
        result.apply_to(self.desired_values)
        if result.version is not None:
            self._desired_version = max(result.version, self._desired_version or result.version)
            for update in result.updates:
                if update.acknowledged:
                    self._property_versions[update.name] = result.version
        for update in result.updates:
            if update.acknowledged or update.status is None or not quiet_restored:
                self.say(_describe_update(update, result.version), property=update.name, status=update.status)
        if result.reported:
            await self._report(result.reported)

    def _start_follow_up(self, follow_up: methods.FollowUp, after: asyncio.Event) -> None:
        self._cancel_work(follow_up.key)
        task = asyncio.get_running_loop().create_task(self._run_follow_up(follow_up, after))
        self._work[follow_up.key] = task

        def forget(done: asyncio.Task) -> None:
            if self._work.get(follow_up.key) is done:
                del self._work[follow_up.key]
        task.add_done_callback(forget)

    def _cancel_work(self, key: str) -> None:
        task = self._work.pop(key, None)
        if task is not None:
            task.cancel()

    async def _run_follow_up(self, follow_up: methods.FollowUp, after: asyncio.Event) -> None:
        try:
            await after.wait()  # the answer and its reported patch go first
            await self._sleep(follow_up.delay)
            self.say(follow_up.event)
            await self._report(follow_up.report(self._now()))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001
            self.say(f"{follow_up.event} not reported: {describe_error(e)}")

    async def _report(self, patch: dict[str, Any]) -> bool:
        try:
            await asyncio.wait_for(self._client.patch_twin_reported_properties(patch),
                                   timeout=self.options.operation_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - log and carry on; the next report may succeed
            self.say(f"reported properties not sent ({describe_error(e) or type(e).__name__}): "
                     f"{_short_json(patch)}")
            return False
        self.say(f"reported {_short_json(patch)}")
        return True

    async def _send_telemetry(self) -> None:
        # Ends on stop() even when its cancellation is lost: Python 3.11's wait_for drops one that
        # arrives as the awaited send completes.
        while not self._stopping:
            await self._sleep(self.options.telemetry_interval)
            if not (self._client and self._client.connected):
                continue  # paused while the SDK reconnects; no backlog of stale readings
            reading = self._sensor.read()
            message = Message(telemetry.encode_reading(reading), content_encoding=telemetry.CONTENT_ENCODING,
                              content_type=telemetry.CONTENT_TYPE)
            try:
                await asyncio.wait_for(self._client.send_message(message),
                                       timeout=self.options.operation_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                self.say(f"telemetry not sent: {describe_error(e) or type(e).__name__}")
            else:
                self.say("telemetry " + " ".join(f"{k}={v}" for k, v in reading.items()))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _short_json(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, default=str, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit] + "…"


def _describe_update(update: properties.PropertyUpdate, version: int | None) -> str:
    value = _short_json(update.value)
    if update.status is None:
        return f"property {update.name} = {value} ignored: {update.description}"
    if not update.acknowledged:
        return f"property {update.name} = {value} applied (already acknowledged)"
    return f"property {update.name} = {value} -> {update.status} {update.description} (v{version})"
