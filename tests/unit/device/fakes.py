"""A fake SDK client injected through the ClientFactory boundary, plus controllable time."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.iot.device import MethodRequest
from azure.iot.device.provisioning.models.registration_result import RegistrationResult, RegistrationState

from device.sdk import HubIdentity

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)
_request_ids = itertools.count(1)


class FakeDeviceClient:
    """Records what the device sends; lets a test play the hub (invoke, patch desired, drop)."""

    def __init__(self, twin: dict | None = None, connect_errors: list[BaseException] | None = None):
        self.connected = False
        self.twin = twin or {"desired": {"$version": 1}, "reported": {"$version": 1}}
        self.connect_errors = list(connect_errors or [])
        self.connect_calls = 0
        self.twin_reads = 0
        self.reported: list[dict] = []
        self.responses: list[Any] = []
        self.messages: list[Any] = []
        self.shutdown_calls = 0
        self.on_method_request_received = None
        self.on_twin_desired_properties_patch_received = None
        self.on_message_received = None
        self.on_connection_state_change = None
        self.on_background_exception = None

    async def connect(self) -> None:
        self.connect_calls += 1
        if self.connect_errors:
            raise self.connect_errors.pop(0)
        self.connected = True

    async def shutdown(self) -> None:
        self.shutdown_calls += 1
        self.connected = False

    async def send_method_response(self, response: Any) -> None:
        self.responses.append(response)

    async def patch_twin_reported_properties(self, patch: dict) -> None:
        self.reported.append(patch)

    async def get_twin(self) -> dict:
        self.twin_reads += 1
        return self.twin

    async def send_message(self, message: Any) -> None:
        self.messages.append(message)

    # --- the hub's side ---------------------------------------------------------------------
    def invoke(self, name: str, payload: Any = None) -> MethodRequest:
        request = MethodRequest(request_id=str(next(_request_ids)), name=name, payload=payload)
        self.on_method_request_received(request)
        return request

    def response_to(self, request: MethodRequest) -> Any:
        matches = [r for r in self.responses if r.request_id == request.request_id]
        assert len(matches) == 1, f"expected one response to {request.name}, got {len(matches)}"
        return matches[0]

    def all_reported(self) -> dict:
        """The reported properties as the hub would hold them after every patch (null deletes)."""
        merged: dict = {}
        for patch in self.reported:
            _merge(merged, patch)
        return merged

    def set_connected(self, connected: bool) -> None:
        self.connected = connected
        self.on_connection_state_change()


def _merge(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


class FakeProvisioningClient:
    def __init__(self, factory: "FakeFactory", registration_id: str):
        self.factory = factory
        self.registration_id = registration_id

    async def register(self) -> Any:
        self.factory.registrations.append(self.registration_id)
        if self.factory.provisioning_errors:
            raise self.factory.provisioning_errors.pop(0)
        if self.factory.provisioning_status != "assigned":
            return RegistrationResult("op", self.factory.provisioning_status, None)
        state = RegistrationState(device_id=self.registration_id, assigned_hub="hub.example.test",
                                  sub_status="initialAssignment")
        return RegistrationResult("op", "assigned", state)


class FakeFactory:
    """Hands out FakeDeviceClients: given ones by device id, or fresh ones."""

    def __init__(self, *clients: FakeDeviceClient, by_id: dict[str, FakeDeviceClient] | None = None):
        self.queue = list(clients)
        self.by_id = dict(by_id or {})
        self.created: dict[str, FakeDeviceClient] = {}
        self.identities: list[HubIdentity] = []
        self.ca_pems: list[str | None] = []
        self.registrations: list[str] = []
        self.provisioning_errors: list[BaseException] = []
        self.provisioning_status = "assigned"

    def hub_client(self, identity: HubIdentity, ca_pem: str | None) -> FakeDeviceClient:
        self.identities.append(identity)
        self.ca_pems.append(ca_pem)
        client = self.by_id.get(identity.device_id) or (self.queue.pop(0) if self.queue else FakeDeviceClient())
        self.created[identity.device_id] = client
        return client

    def provisioning_client(self, settings: Any, ca_pem: str | None) -> FakeProvisioningClient:
        self.ca_pems.append(ca_pem)
        return FakeProvisioningClient(self, settings.registration_id)


class FakeTime:
    """A monotonic clock that only moves when the code under test sleeps (instant backoff tests)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if len(self.sleeps) > 1000:  # fail fast instead of spinning if a retry loop never ends
            raise AssertionError("runaway: more than 1000 sleeps")
        self.now += seconds
        await asyncio.sleep(0)

    def utc(self) -> datetime:
        return T0 + timedelta(seconds=self.now)


class GatedSleep:
    """A sleep that returns only when the test releases it: proves ordering without wall time."""

    def __init__(self) -> None:
        self.waiting: list[tuple[float, asyncio.Future]] = []
        self.changed = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((seconds, future))
        self.changed.set()
        try:
            await future
        finally:
            self.waiting = [(s, f) for s, f in self.waiting if f is not future]

    async def wait_for_sleeper(self, seconds: float, timeout: float = 10.0) -> None:
        async def until() -> None:
            while not any(s == seconds for s, _ in self.waiting):
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(until(), timeout)

    def release(self, seconds: float) -> None:
        for s, future in self.waiting:
            if s == seconds and not future.done():
                future.set_result(None)
                return
        raise AssertionError(f"nothing sleeps {seconds} s (sleeping: {[s for s, _ in self.waiting]})")
