"""The Hub facade: the one object every front (MQTT, REST, job scheduler, in-process API) calls.

It composes the registry, twins, method calls, telemetry and DPS enrollments, authenticates devices
and service policies, persists through the store port, and pushes device-bound traffic through a
`DeviceLink` (the MQTT front). Not thread-safe: use it from one thread (the server's event loop).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, Protocol

from hubsettings import wellknown
from hubsettings.sas import SasError, SasToken, parse_token

from .. import store as store_kinds
from ..store import SqliteStore, Store
from .c2d import CloudMessage, CloudToDeviceQueues
from .clock import Clock, system_clock
from .errors import ArgumentInvalid, DeviceAlreadyExists, DeviceNotFound, DeviceNotOnline, IotHubUnauthorizedAccess
from .methods import DEFAULT_RESPONSE_TIMEOUT, MethodCall, MethodCalls, MethodResult, parse_response_payload
from .provisioning import GroupEnrollment, IndividualEnrollment, Provisioning, RegistrationState
from .registry import Device, Registry, Status
from .telemetry import DEFAULT_CAPACITY, TelemetryBuffer, TelemetryMessage
from .twins import Twin, twin_document


class DeviceLink(Protocol):
    """How the hub reaches connected devices (implemented by the MQTT device front)."""

    def send_desired_patch(self, device_id: str, patch: dict[str, Any]) -> None: ...
    def send_method_request(self, device_id: str, call: MethodCall) -> None: ...
    def can_receive_method(self, device_id: str, method_name: str) -> bool:
        """Connected and subscribed to this method's requests (IoT Hub answers 404103 otherwise)."""
    def disconnect_device(self, device_id: str) -> None: ...
    def forget_device(self, device_id: str) -> None:
        """The device was deleted: drop what the link keeps for it (MQTT persistent session, ...)."""
    def deliver_cloud_messages(self, device_id: str) -> None:
        """Cloud-to-device messages are waiting for this device: send them if it can take them."""


class DeviceDisabled(IotHubUnauthorizedAccess):
    """A disabled device may not connect (IoT Hub answers as for bad credentials)."""


def _properties_of(twin_body: dict[str, Any]) -> dict[str, Any]:
    """A twin body's `properties`, which must be an object when given (400, not a crash, otherwise)."""
    properties = twin_body.get("properties") or {}
    if not isinstance(properties, dict):
        raise ArgumentInvalid("The twin's properties must be a JSON object")
    return properties


class Hub:
    def __init__(self, host_name: str = wellknown.HOST_NAME, *, store: Store | None = None,
                 clock: Clock = system_clock, telemetry_capacity: int = DEFAULT_CAPACITY,
                 id_scope: str = wellknown.DPS_ID_SCOPE, host_aliases: tuple[str, ...] = ()):
        self.host_name = host_name
        self._accepted_hosts = {h.lower() for h in (host_name, *host_aliases) if h}
        self._clock = clock
        self._store: Store = store if store is not None else SqliteStore.in_memory()
        self.registry = Registry(clock)
        self.twins: dict[str, Twin] = {}
        self.methods = MethodCalls(clock)
        self.telemetry = TelemetryBuffer(telemetry_capacity)
        self.provisioning = Provisioning(id_scope)
        self.registrations: dict[str, RegistrationState] = {}
        self.policies: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.connections_total: Counter[str] = Counter()  # accepted device connections, by device id
        self._online: set[str] = set()
        self._link: DeviceLink | None = None
        self._load()
        self.c2d = CloudToDeviceQueues(clock, self._store)

    # ---- wiring ----------------------------------------------------------------------------------
    def attach_link(self, link: DeviceLink | None) -> None:
        self._link = link

    def now(self) -> float:
        return self._clock()

    def close(self) -> None:
        for device_id in list(self._online):
            self.device_disconnected(device_id)
        self._store.close()

    def _load(self) -> None:
        for record in self._store.load(store_kinds.DEVICES):
            device = Device.from_record(record)
            device.connection_state = "Disconnected"  # nobody is connected to a hub that just started
            self.registry.load(device)
        for record in self._store.load(store_kinds.TWINS):
            if record.get("device_id") in self.registry:
                twin = Twin.from_record(record)
                self.twins[twin.device_id] = twin
        for device in self.registry.list():
            self.twins.setdefault(device.device_id, Twin(device.device_id))
        for record in self._store.load(store_kinds.ENROLLMENTS):
            self.provisioning.add_individual(IndividualEnrollment(**record))
        for record in self._store.load(store_kinds.REGISTRATIONS):
            if record.get("device_id") in self.registry:
                state = RegistrationState(**record)
                self.registrations[state.registration_id] = state

    def _save_device(self, device: Device) -> None:
        self._store.put(store_kinds.DEVICES, device.device_id, device.to_record())

    def _save_twin(self, twin: Twin) -> None:
        self._store.put(store_kinds.TWINS, twin.device_id, twin.to_record())

    # ---- well-known development credentials ------------------------------------------------------
    def register_well_known(self) -> None:
        """Policies, myDeviceId and the DPS group enrollment, as documented in hubsettings.wellknown."""
        self.policies.update(wellknown.POLICIES)
        if wellknown.DEVICE_ID not in self.registry:
            self.create_device(wellknown.DEVICE_ID, primary_key=wellknown.DEVICE_KEY)
        self.provisioning.add_group(GroupEnrollment(wellknown.DPS_GROUP_ENROLLMENT, wellknown.DPS_GROUP_KEY))

    # ---- registry --------------------------------------------------------------------------------
    def create_device(self, device_id: str, *, primary_key: str | None = None,
                      secondary_key: str | None = None, status: Status = "enabled") -> Device:
        device = self.registry.create(device_id, primary_key=primary_key, secondary_key=secondary_key,
                                      status=status)
        twin = self.twins[device_id] = Twin(device_id)
        self._save_device(device)
        self._save_twin(twin)
        return device

    def get_device(self, device_id: str) -> Device:
        return self.registry.get(device_id)

    def list_devices(self, top: int | None = None) -> list[Device]:
        return self.registry.list(top)

    def update_device(self, device_id: str, *, if_match: str | None = None, status: Status | None = None,
                      status_reason: str | None = None, primary_key: str | None = None,
                      secondary_key: str | None = None) -> Device:
        device = self.registry.update(device_id, if_match=if_match, status=status, status_reason=status_reason,
                                      primary_key=primary_key, secondary_key=secondary_key)
        self._save_device(device)
        if not device.enabled and device_id in self._online:
            self._disconnect(device_id)  # IoT Hub drops a device that is disabled
        return device

    def delete_device(self, device_id: str, *, if_match: str | None = None) -> None:
        self.registry.delete(device_id, if_match=if_match)
        self.twins.pop(device_id, None)
        self._store.delete(store_kinds.DEVICES, device_id)
        self._store.delete(store_kinds.TWINS, device_id)
        self.methods.fail_device(device_id, DeviceNotFound(f"Device {device_id} was deleted"))
        # DPS no longer owns the id: a device created later under it by other means is not DPS's to re-key.
        for registration_id in [r for r, s in self.registrations.items() if s.device_id == device_id]:
            del self.registrations[registration_id]
            self._store.delete(store_kinds.REGISTRATIONS, registration_id)
        if device_id in self._online:
            self._disconnect(device_id)
        self._store.delete(store_kinds.SESSIONS, device_id)  # the MQTT client id of a device is its id
        if self._link:
            self._link.forget_device(device_id)  # a device created again with this id starts afresh
        self.c2d.purge(device_id)

    def _disconnect(self, device_id: str) -> None:
        if self._link:
            self._link.disconnect_device(device_id)
        self.device_disconnected(device_id)

    # ---- twins (service side) --------------------------------------------------------------------
    def _twin(self, device_id: str) -> Twin:
        self.registry.get(device_id)  # DeviceNotFound first
        return self.twins[device_id]

    def get_twin(self, device_id: str) -> dict[str, Any]:
        return twin_document(self.registry.get(device_id), self._twin(device_id), self._clock())

    def twin_documents(self) -> list[dict[str, Any]]:
        """Every twin as IoT Hub presents it: what queries run over."""
        now = self._clock()
        return [twin_document(device, self.twins[device.device_id], now) for device in self.registry.list()]

    def update_twin(self, device_id: str, patch: dict[str, Any], *, if_match: str | None = None) -> dict[str, Any]:
        """PATCH /twins/{id}: merge `tags` and `properties.desired`; pushes the desired patch."""
        if not isinstance(patch, dict):
            raise ArgumentInvalid("The twin patch must be a JSON object")
        twin = self._twin(device_id)
        twin.check_if_match(if_match)
        tags = patch.get("tags")
        desired = _properties_of(patch).get("desired")
        if tags is None and desired is None:
            raise ArgumentInvalid("The twin patch has neither tags nor properties.desired")
        desired_patch = twin.update(tags, desired, self._clock())  # all or nothing
        if desired_patch is not None:
            self._push_desired(device_id, desired_patch)
        self._save_twin(twin)
        return self.get_twin(device_id)

    def replace_twin(self, device_id: str, document: dict[str, Any], *,
                     if_match: str | None = None) -> dict[str, Any]:
        """PUT /twins/{id}: replace tags and desired properties (reported ones stay)."""
        if not isinstance(document, dict):
            raise ArgumentInvalid("The twin must be a JSON object")
        twin = self._twin(device_id)
        twin.check_if_match(if_match)
        desired_patch = twin.replace(document.get("tags") or {},
                                     _properties_of(document).get("desired") or {}, self._clock())
        if desired_patch is not None:
            self._push_desired(device_id, desired_patch)
        self._save_twin(twin)
        return self.get_twin(device_id)

    def patch_desired(self, device_id: str, desired: dict[str, Any], *,
                      if_match: str | None = None) -> dict[str, Any]:
        """Shorthand for update_twin with only desired properties (the in-process API)."""
        return self.update_twin(device_id, {"properties": {"desired": desired}}, if_match=if_match)

    def _push_desired(self, device_id: str, patch: dict[str, Any]) -> None:
        if self._link and device_id in self._online:
            self._link.send_desired_patch(device_id, patch)

    # ---- device side -----------------------------------------------------------------------------
    def authenticate_device(self, device_id: str, token_text: str) -> Device:
        """Check a device SAS token: sr names this hub and device, not expired, signed with a key of an
        existing, enabled device. Raises IotHubUnauthorizedAccess (DeviceDisabled) or DeviceNotFound."""
        try:
            token = parse_token(token_text)
        except SasError as e:
            raise IotHubUnauthorizedAccess(str(e)) from None
        host, sep, rest = token.resource_uri.partition("/devices/")
        if not sep or rest != device_id or not self._is_our_host(host):
            raise IotHubUnauthorizedAccess("The token's resource does not name this hub and device")
        if token.is_expired(self._clock()):
            raise IotHubUnauthorizedAccess("The token has expired")
        device = self.registry.get(device_id)
        if not any(token.signature_matches(key) for key in (device.primary_key, device.secondary_key)):
            raise IotHubUnauthorizedAccess("The token's signature does not match the device's keys")
        if not device.enabled:
            raise DeviceDisabled(f"Device {device_id} is disabled")
        return device

    def authenticate_service(self, token_text: str, required_right: str) -> str:
        """Check a service (policy) SAS token for the REST front; returns the policy name."""
        try:
            token = parse_token(token_text)
        except SasError as e:
            raise IotHubUnauthorizedAccess(str(e)) from None
        host = token.resource_uri.split("/", 1)[0]
        policy = self.policies.get(token.policy or "")
        if not self._is_our_host(host) or policy is None:
            raise IotHubUnauthorizedAccess("The token does not name this hub and a known policy")
        if token.is_expired(self._clock()):
            raise IotHubUnauthorizedAccess("The token has expired")
        if not token.signature_matches(policy[0]):
            raise IotHubUnauthorizedAccess("The token's signature does not match the policy key")
        if required_right not in policy[1]:
            raise IotHubUnauthorizedAccess(f"Policy {token.policy} lacks the {required_right} right")
        return token.policy or ""

    def names_this_hub(self, host: str) -> bool:
        """Whether a token's host (with or without a port) names this hub."""
        return self._is_our_host(host)

    def _is_our_host(self, host: str) -> bool:
        host = host.lower()
        if host in self._accepted_hosts:
            return True
        name, sep, port = host.rpartition(":")
        return bool(sep) and port.isdigit() and name in self._accepted_hosts

    def is_online(self, device_id: str) -> bool:
        return device_id in self._online

    def device_connected(self, device_id: str, model_id: str | None = None) -> None:
        """A device's connection was accepted: it is online; calls waiting for it are sent now.
        model_id: the Plug and Play model the device announced (kept until it announces another)."""
        device = self.registry.set_connected(device_id, True)
        if model_id is not None:
            device.model_id = model_id
        self._online.add(device_id)
        self.connections_total[device_id] += 1
        self._save_device(device)
        self._dispatch_waiting(device_id)

    def device_subscribed(self, device_id: str) -> None:
        """The device subscribed to more: calls waiting for it that it can now receive are sent now."""
        self._dispatch_waiting(device_id)

    def _dispatch_waiting(self, device_id: str) -> None:
        for call in self.methods.waiting_for(device_id):
            if self._can_receive_method(device_id, call.method_name):
                self._dispatch(call)

    def _can_receive_method(self, device_id: str, method_name: str) -> bool:
        """Online and (with a link) subscribed to the method: what IoT Hub calls reachable."""
        if device_id not in self._online:
            return False
        return self._link is None or self._link.can_receive_method(device_id, method_name)

    def device_disconnected(self, device_id: str) -> None:
        if device_id not in self._online:
            return
        self._online.discard(device_id)
        device = self.registry.find(device_id)
        if device:
            self.registry.set_connected(device_id, False)
            self._save_device(device)

    def device_twin(self, device_id: str) -> dict[str, Any]:
        """The body of the reply to a device's twin GET."""
        self.registry.touch(device_id)
        return self._twin(device_id).for_device()

    def report_properties(self, device_id: str, patch: Any) -> int:
        """A device's reported-properties patch; returns the new reported $version."""
        twin = self._twin(device_id)
        self.registry.touch(device_id)
        version = twin.patch_reported(patch, self._clock())
        self._save_twin(twin)
        return version

    def method_response(self, device_id: str, rid: str, status: int, body: bytes) -> bool:
        self.registry.touch(device_id)
        return self.methods.complete(device_id, rid, status, parse_response_payload(body))

    def receive_telemetry(self, device_id: str, body: bytes, properties: dict[str, str] | None = None,
                          system_properties: dict[str, str] | None = None) -> TelemetryMessage:
        self.registry.touch(device_id)
        message = TelemetryMessage(device_id, body, dict(properties or {}), dict(system_properties or {}),
                                   self._clock())
        self.telemetry.add(message)
        return message

    # ---- direct methods --------------------------------------------------------------------------
    def start_method(self, device_id: str, method_name: str, payload: Any = None, *,
                     response_timeout: float = DEFAULT_RESPONSE_TIMEOUT, connect_timeout: float = 0) -> MethodCall:
        """Start a call; it completes via the device's response or fails at `expire_due()`."""
        self.registry.get(device_id)
        online = self._can_receive_method(device_id, method_name)
        try:
            call = self.methods.start(device_id, method_name, payload, online=online,
                                      response_timeout=response_timeout, connect_timeout=connect_timeout)
        except DeviceNotOnline:
            if device_id in self._online:  # connected, but not subscribed to its method requests
                raise DeviceNotOnline(f"Device {device_id} is connected but hasn't registered the direct method "
                                      "callback (it has not subscribed to its method requests)") from None
            raise
        if online:
            self._dispatch(call)
        return call

    def _dispatch(self, call: MethodCall) -> None:
        self.methods.mark_dispatched(call)
        if self._link:
            self._link.send_method_request(call.device_id, call)

    async def invoke_method(self, device_id: str, method_name: str, payload: Any = None, *,
                            response_timeout: float = DEFAULT_RESPONSE_TIMEOUT,
                            connect_timeout: float = 0) -> MethodResult:
        """Invoke and wait for the device's answer. Raises DeviceNotOnline (404103), GatewayTimeout
        (504101), DeviceNotFound, ArgumentInvalid. Deadlines are enforced by `expire_due()` ticks."""
        future: asyncio.Future[MethodCall] = asyncio.get_running_loop().create_future()
        call = self.start_method(device_id, method_name, payload, response_timeout=response_timeout,
                                 connect_timeout=connect_timeout)

        def on_done(finished: MethodCall) -> None:
            if not future.done():
                future.set_result(finished)

        call.add_done_callback(on_done)
        try:
            finished = await future
        except asyncio.CancelledError:
            # The caller gave up (a job's cancel or time limit): the call must not reach the device later.
            self.methods.cancel(call)
            raise
        if finished.error is not None:
            raise finished.error
        assert finished.result is not None
        return finished.result

    def expire_due(self) -> list[MethodCall]:
        """Fail method calls whose connect or response deadline has passed (call this periodically)."""
        self.c2d.expire()
        return self.methods.expire()

    # ---- cloud-to-device messages ----------------------------------------------------------------
    def send_cloud_message(self, device_id: str, body: bytes, **fields: Any) -> CloudMessage:
        """Queue a cloud-to-device message (fields: see CloudToDeviceQueues.enqueue) and push it to the
        device if it is connected. Raises DeviceNotFound, MessageTooLarge,
        DeviceMaximumQueueDepthExceeded, ArgumentInvalid; nothing is queued when it raises."""
        device = self.registry.get(device_id)
        message = self.c2d.enqueue(device_id, body, device_generation_id=device.generation_id, **fields)
        if self._link and device_id in self._online:
            self._link.deliver_cloud_messages(device_id)
        return message

    def purge_cloud_messages(self, device_id: str) -> int:
        """DELETE /devices/{id}/commands: drop the device's queued messages; returns how many."""
        self.registry.get(device_id)
        return self.c2d.purge(device_id)

    # ---- persistence for the job scheduler (emulator/hub/jobs.py) ---------------------------------
    def save_job(self, snapshot: dict[str, Any]) -> None:
        """The scheduler's persistence hook: keep a job snapshot across restarts."""
        self._store.put(store_kinds.JOBS, str(snapshot["job"]["jobId"]), snapshot)

    def saved_jobs(self) -> list[dict[str, Any]]:
        return self._store.load(store_kinds.JOBS)

    # ---- persistence for the MQTT front's persistent sessions -------------------------------------
    def save_session(self, client_id: str, record: dict[str, Any]) -> None:
        """Keep a persistent (clean_session=0) session's record across restarts."""
        self._store.put(store_kinds.SESSIONS, client_id, record)

    def delete_session(self, client_id: str) -> None:
        self._store.delete(store_kinds.SESSIONS, client_id)

    def saved_sessions(self) -> list[dict[str, Any]]:
        """The stored session records of devices that still exist."""
        return [r for r in self._store.load(store_kinds.SESSIONS) if r.get("client_id") in self.registry]

    # ---- DPS -------------------------------------------------------------------------------------
    def add_enrollment(self, enrollment: IndividualEnrollment) -> None:
        self.provisioning.add_individual(enrollment)
        self._store.put(store_kinds.ENROLLMENTS, enrollment.registration_id, enrollment.to_record())

    def register_device(self, id_scope: str, registration_id: str, token: SasToken) -> RegistrationState:
        """A DPS registration: attest, create (or re-key) the device, assign it to this hub.

        DPS only re-keys a device that this same registration created. A device registered by other
        means (service API, private keys) is refused with DeviceAlreadyExists (409) unless it already
        holds the attested key: otherwise anyone with the public group key could take it over."""
        attestation = self.provisioning.attest(id_scope, registration_id, token, self._clock())
        device = self.registry.find(attestation.device_id)
        previous = self.registrations.get(registration_id)
        if device is None:
            keys = attestation.device_keys
            self.create_device(attestation.device_id, primary_key=keys[0],
                               secondary_key=keys[1] if len(keys) > 1 else None)
        elif not device.has_key(attestation.matched_key):
            if previous is None or previous.device_id != device.device_id:
                raise DeviceAlreadyExists(
                    f"A device with ID '{device.device_id}' is already registered and was not provisioned by "
                    f"registration '{registration_id}'; DPS will not change its keys")
            # Keep the device's primary key (its existing connection strings keep working) and make the
            # provisioned key valid too.
            self.update_device(device.device_id, secondary_key=attestation.matched_key)
        now = self._clock()
        state = RegistrationState(registration_id, attestation.device_id, self.host_name,
                                  created=previous.created if previous else now, updated=now,
                                  etag=f"{int(now * 1000):x}")
        self.registrations[registration_id] = state
        self._store.put(store_kinds.REGISTRATIONS, registration_id, state.to_record())
        return state
