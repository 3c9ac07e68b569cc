"""The Hub: the emulator's one backend object, which every front (MQTT, REST, in-process API) calls.

It owns the registry, twins, method calls, telemetry, DPS enrollments and registrations, the job
scheduler (`jobs`, restored from the store when the hub opens) and queries (`query`: it decides which
collection a query reads). It authenticates devices and service policies, persists through the store
port, and pushes device-bound traffic through `DeviceConnections` (the MQTT front). Fronts only translate
between the wire and these calls. Not thread-safe: use it from one thread (the server's event loop).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hubsettings import limits, wellknown
from hubsettings.sas import SasError, SasToken, parse_token

from .. import store as store_kinds
from . import long_lived
from ..store import SqliteStore, Store
from .c2d import CloudMessage, CloudToDeviceQueues
from .clock import Clock, system_clock
from .errors import ArgumentInvalid, DeviceAlreadyExists, DeviceNotFound, DeviceNotOnline, IotHubUnauthorizedAccess
from .job_target import HubJobTarget
from .jobs import JobScheduler
from .methods import MethodCall, MethodCalls, MethodResult, parse_response_payload
from .provisioning import GroupEnrollment, IndividualEnrollment, Provisioning, RegistrationState
from .registry import Device, Registry, Status
from .telemetry import DEFAULT_CAPACITY, TelemetryLog, TelemetryMessage
from .queries import run_query
from .query import Query
from .twin_views import TwinViews
from .verified_tokens import VerifiedTokens
from .twins import Twin, shared_twin_document, twin_document


#: Per-device job progress reaches the store at most this often (or per 1,000 rows; see jobs.py).
JOB_PERSIST_BATCH_SECONDS = 0.5


class DeviceConnections(Protocol):
    """The devices' live connections, as the hub reaches them (implemented by the MQTT device front)."""

    def send_desired_patch(self, device_id: str, patch: dict[str, Any]) -> None: ...
    def send_method_request(self, device_id: str, call: MethodCall) -> None: ...
    def can_receive_method(self, device_id: str, method_name: str) -> bool:
        """Connected and subscribed to this method's requests (IoT Hub answers 404103 otherwise)."""
    def disconnect_device(self, device_id: str) -> None: ...
    def forget_device(self, device_id: str) -> None:
        """The device was deleted: drop what the front keeps for it (MQTT persistent session, ...)."""
    def deliver_cloud_messages(self, device_id: str) -> None:
        """Cloud-to-device messages are waiting for this device: send them if it can take them."""


@dataclass(frozen=True)
class NewDevice:
    """One device of a bulk registration (`Hub.create_devices`)."""

    device_id: str
    primary_key: str | None = None
    secondary_key: str | None = None
    status: Status = "enabled"
    tags: dict[str, Any] | None = None




class DeviceDisabled(IotHubUnauthorizedAccess):
    """A disabled device may not connect (IoT Hub answers as for bad credentials)."""


def _properties_of(twin_body: dict[str, Any]) -> dict[str, Any]:
    """A twin body's `properties`, which must be an object when given (400, not a crash, otherwise)."""
    properties = twin_body.get("properties") or {}
    if not isinstance(properties, dict):
        raise ArgumentInvalid("The twin's properties must be a JSON object")
    return properties


def _signed_as_event_hubs(token: SasToken, key: str) -> bool:
    """Event Hubs clients (reading the built-in endpoint) name `sb://host/{entity}` and sign with the
    key's text itself, where IoT Hub's SDKs sign with the base64-decoded key."""
    if "://" not in token.resource_uri:
        return False
    expected = base64.b64encode(hmac.new(key.encode("utf-8"), f"{token.encoded_resource_uri}\n{token.expiry}".encode(),
                                         hashlib.sha256).digest()).decode("ascii")
    return hmac.compare_digest(expected, token.signature)


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
        self.views = TwinViews(self._twin_document_of)  # what queries and job selection read
        self.methods = MethodCalls(clock)
        # On disk, device-to-cloud messages survive restarts (IoT Hub keeps them for its retention period).
        self.telemetry = TelemetryLog(telemetry_capacity, journal=self._store.telemetry_journal())
        self.telemetry.created_at = clock()
        self.provisioning = Provisioning(id_scope)
        self.registrations: dict[str, RegistrationState] = {}
        self.policies: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._verified_tokens = VerifiedTokens()
        self.connections_total: Counter[str] = Counter()  # accepted device connections, by device id
        self._online: set[str] = set()
        self._connections: DeviceConnections | None = None
        # Jobs survive restarts through the store; one interrupted mid-run ends `failed` (jobs.py).
        self.jobs = JobScheduler(HubJobTarget(self), clock, persist=self.save_job,
                                 persist_batch_seconds=JOB_PERSIST_BATCH_SECONDS)
        self._load()
        self.c2d = CloudToDeviceQueues(clock, self._store)

    # ---- wiring ----------------------------------------------------------------------------------
    def attach_connections(self, connections: DeviceConnections | None) -> None:
        self._connections = connections


    def now(self) -> float:
        return self._clock()

    def close(self) -> None:
        for device_id in list(self._online):
            self.device_disconnected(device_id)
        self.commit_telemetry()
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
            self.views.changed(device.device_id)
        for record in self._store.load(store_kinds.ENROLLMENTS):
            self.provisioning.add_individual(IndividualEnrollment(**record))
        for record in self._store.load(store_kinds.REGISTRATIONS):
            if record.get("device_id") in self.registry:
                state = RegistrationState(**record)
                self.registrations[state.registration_id] = state
        self.jobs.restore(self.saved_jobs())
        self.telemetry.load(self._clock())
        long_lived.settle(len(self.registry))

    def _save_device(self, device: Device, *, connection_only: bool = False) -> None:
        """`connection_only`: only its connection state (and activity, model id) changed."""
        self._store.put(store_kinds.DEVICES, device.device_id, device.to_record())
        if connection_only:
            self.views.patched(device.device_id, {"connectionState": device.connection_state,
                                                  "lastActivityTime": device.last_activity_time,
                                                  "modelId": device.model_id})
        else:
            self.views.changed(device.device_id)

    def _save_twin(self, twin: Twin) -> None:
        self._store.put(store_kinds.TWINS, twin.device_id, twin.to_record())
        self.views.changed(twin.device_id)

    def _touch(self, device_id: str) -> None:
        """Any message from the device: its lastActivityTime moves (not saved, as before)."""
        if self.registry.touch(device_id):
            self.views.patched(device_id, {"lastActivityTime": self.registry.get(device_id).last_activity_time})

    # ---- well-known development credentials ------------------------------------------------------
    def register_well_known(self) -> None:
        """Policies, myDeviceId and the DPS group enrollment, as documented in hubsettings.wellknown."""
        self.policies.update(wellknown.POLICIES)
        if wellknown.DEVICE_ID not in self.registry:
            self.create_device(wellknown.DEVICE_ID, primary_key=wellknown.DEVICE_KEY)
        self.provisioning.add_group(GroupEnrollment(wellknown.DPS_GROUP_ENROLLMENT, wellknown.DPS_GROUP_KEY))

    # ---- registry --------------------------------------------------------------------------------
    def create_device(self, device_id: str, *, primary_key: str | None = None, secondary_key: str | None = None,
                      status: Status = "enabled", status_reason: str | None = None) -> Device:
        device = self.registry.create(device_id, primary_key=primary_key, secondary_key=secondary_key,
                                      status=status, status_reason=status_reason)
        twin = self.twins[device_id] = Twin(device_id)
        self._save_device(device)
        self._save_twin(twin)
        return device

    def create_devices(self, new_devices: Sequence[NewDevice]) -> list[Device]:
        """Register many devices at once (bulk import), all or nothing: every one is validated before
        any is added, and they are saved in one store transaction."""
        seen: set[str] = set()
        created: list[tuple[Device, Twin]] = []
        now = self._clock()
        for new in new_devices:
            if new.device_id in seen:
                raise DeviceAlreadyExists(f"Device '{new.device_id}' appears twice in the request")
            seen.add(new.device_id)
            device = self.registry.new_device(new.device_id, primary_key=new.primary_key,
                                              secondary_key=new.secondary_key, status=new.status)
            twin = Twin(new.device_id)
            if new.tags:
                twin.update(new.tags, None, now)
            created.append((device, twin))
        # Everything is valid: from here on nothing can fail.
        self._store.put_many(store_kinds.DEVICES, ((d.device_id, d.to_record()) for d, _ in created))
        self._store.put_many(store_kinds.TWINS, ((t.device_id, t.to_record()) for _, t in created))
        for device, twin in created:
            self.registry.load(device)
            self.twins[device.device_id] = twin
            self.views.changed(device.device_id)
        long_lived.settle(len(created))
        return [device for device, _ in created]

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
        self.views.removed(device_id)
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
        if self._connections:
            self._connections.forget_device(device_id)  # a device created again with this id starts afresh
        self.c2d.purge(device_id)

    def _disconnect(self, device_id: str) -> None:
        if self._connections:
            self._connections.disconnect_device(device_id)
        self.device_disconnected(device_id)

    # ---- twins (service side) --------------------------------------------------------------------
    def _twin(self, device_id: str) -> Twin:
        self.registry.get(device_id)  # DeviceNotFound first
        return self.twins[device_id]

    def get_twin(self, device_id: str) -> dict[str, Any]:
        return twin_document(self.registry.get(device_id), self._twin(device_id), self._clock())

    def twin_documents(self) -> list[dict[str, Any]]:
        """Every twin as IoT Hub presents it (read-only documents shared with queries)."""
        return self.views.documents()

    async def query(self, query: Query) -> list[dict[str, Any]]:
        """Every row of a parsed query, without holding up the event loop; rows are read-only.
        `FROM devices.jobs` reads the records of this hub's job scheduler."""
        return await run_query(query, self.views, self.jobs.iter_device_job_documents())

    def _twin_document_of(self, device_id: str) -> dict[str, Any] | None:
        device, twin = self.registry.find(device_id), self.twins.get(device_id)
        return None if device is None or twin is None else shared_twin_document(device, twin, self._clock())

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
        if self._connections and device_id in self._online:
            self._connections.send_desired_patch(device_id, patch)

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

    def authenticate_service(self, token_text: str, accepted_rights: str | Sequence[str]) -> str:
        """Check a service (policy) SAS token for the REST front: a known policy of this hub, not
        expired, signed with the policy's key, and holding at least one of `accepted_rights` (one
        right, or the rights any one of which the operation accepts). Returns the policy name."""
        accepted = (accepted_rights,) if isinstance(accepted_rights, str) else tuple(accepted_rights)
        now = self._clock()
        policy_name = self._verified_tokens.policy_of(token_text, now)
        if policy_name is None:
            policy_name = self._verify_service_token(token_text, now)
        rights = self.policies[policy_name][1] if policy_name in self.policies else ()
        if not any(right in rights for right in accepted):
            raise IotHubUnauthorizedAccess(f"Policy {policy_name} lacks the {' or '.join(accepted)} right")
        return policy_name

    def _verify_service_token(self, token_text: str, now: float) -> str:
        try:
            token = parse_token(token_text)
        except SasError as e:
            raise IotHubUnauthorizedAccess(str(e)) from None
        # IoT Hub tokens name `host[/...]`; Event Hubs clients sign `sb://host/{entity}` (or amqps://)
        host = token.resource_uri.split("://", 1)[-1].split("/", 1)[0]
        policy = self.policies.get(token.policy or "")
        if not self._is_our_host(host) or policy is None:
            raise IotHubUnauthorizedAccess("The token does not name this hub and a known policy")
        if token.is_expired(now):
            raise IotHubUnauthorizedAccess("The token has expired")
        if not token.signature_matches(policy[0]) and not _signed_as_event_hubs(token, policy[0]):
            raise IotHubUnauthorizedAccess("The token's signature does not match the policy key")
        policy_name = token.policy or ""
        self._verified_tokens.remember(token_text, policy_name, token.expiry)
        return policy_name

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
        self._save_device(device, connection_only=True)
        self._dispatch_waiting(device_id)

    def device_subscribed(self, device_id: str) -> None:
        """The device subscribed to more: calls waiting for it that it can now receive are sent now."""
        self._dispatch_waiting(device_id)

    def _dispatch_waiting(self, device_id: str) -> None:
        for call in self.methods.waiting_for(device_id):
            if self._can_receive_method(device_id, call.method_name):
                self._dispatch(call)

    def _can_receive_method(self, device_id: str, method_name: str) -> bool:
        """Online and (with connections attached) subscribed to the method: what IoT Hub calls reachable."""
        if device_id not in self._online:
            return False
        return self._connections is None or self._connections.can_receive_method(device_id, method_name)

    def device_disconnected(self, device_id: str) -> None:
        if device_id not in self._online:
            return
        self._online.discard(device_id)
        device = self.registry.find(device_id)
        if device:
            self.registry.set_connected(device_id, False)
            self._save_device(device, connection_only=True)

    def device_twin(self, device_id: str) -> dict[str, Any]:
        """The body of the reply to a device's twin GET."""
        self._touch(device_id)
        return self._twin(device_id).for_device()

    def report_properties(self, device_id: str, patch: Any) -> int:
        """A device's reported-properties patch; returns the new reported $version."""
        twin = self._twin(device_id)
        self._touch(device_id)
        version = twin.patch_reported(patch, self._clock())
        self._save_twin(twin)
        return version

    def method_response(self, device_id: str, rid: str, status: int, body: bytes) -> bool:
        self._touch(device_id)
        return self.methods.complete(device_id, rid, status, parse_response_payload(body))

    def receive_telemetry(self, device_id: str, body: bytes, properties: dict[str, str] | None = None,
                          system_properties: dict[str, str] | None = None, *,
                          commit: bool = True) -> TelemetryMessage:
        """A device-to-cloud message, kept (committed to the store) on return; with `commit=False` it is
        kept at the next `commit_telemetry()`, which must come before the message is acknowledged."""
        self._touch(device_id)
        device = self.registry.find(device_id)
        message = TelemetryMessage(device_id, body, dict(properties or {}), dict(system_properties or {}),
                                   self._clock(), generation_id=device.generation_id if device else "",
                                   model_id=device.model_id if device else "")
        return self.telemetry.add(message, commit=commit)

    def commit_telemetry(self) -> None:
        """Make the messages received with commit=False durable (one store transaction)."""
        self.telemetry.commit()

    # ---- direct methods --------------------------------------------------------------------------
    def start_method(self, device_id: str, method_name: str, payload: Any = None, *,
                     response_timeout: float = limits.METHOD_RESPONSE_TIMEOUT_DEFAULT,
                     connect_timeout: float = limits.METHOD_CONNECT_TIMEOUT_DEFAULT) -> MethodCall:
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
        if self._connections:
            self._connections.send_method_request(call.device_id, call)

    async def invoke_method(self, device_id: str, method_name: str, payload: Any = None, *,
                            response_timeout: float = limits.METHOD_RESPONSE_TIMEOUT_DEFAULT,
                            connect_timeout: float = limits.METHOD_CONNECT_TIMEOUT_DEFAULT) -> MethodResult:
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
        """Fail method calls whose connect or response deadline has passed, and drop what retention no
        longer keeps (call this periodically)."""
        self.c2d.expire()
        self.telemetry.expire(self._clock())
        return self.methods.expire()

    # ---- cloud-to-device messages ----------------------------------------------------------------
    def send_cloud_message(self, device_id: str, body: bytes, **fields: Any) -> CloudMessage:
        """Queue a cloud-to-device message (fields: see CloudToDeviceQueues.enqueue) and push it to the
        device if it is connected. Raises DeviceNotFound, MessageTooLarge,
        DeviceMaximumQueueDepthExceeded, ArgumentInvalid; nothing is queued when it raises."""
        device = self.registry.get(device_id)
        message = self.c2d.enqueue(device_id, body, device_generation_id=device.generation_id, **fields)
        if self._connections and device_id in self._online:
            self._connections.deliver_cloud_messages(device_id)
        return message

    def purge_cloud_messages(self, device_id: str) -> int:
        """DELETE /devices/{id}/commands: drop the device's queued messages; returns how many."""
        self.registry.get(device_id)
        return self.c2d.purge(device_id)

    # ---- persistence for the job scheduler (emulator/hub/jobs.py) ---------------------------------
    def save_job(self, changes: dict[str, Any]) -> None:
        """The scheduler's persistence hook: the job, and the device rows that changed (merged by
        deviceId into those saved before), kept across restarts."""
        job_id = str(changes["job"]["jobId"])
        selected = changes.get("selected") or ()
        if selected:  # before the job record, so that a job on record always has its devices
            self._store.put(store_kinds.JOB_SELECTIONS, f"{job_id}/{selected[0]}",
                            {"jobId": job_id, "deviceIds": list(selected)})
        self._store.put(store_kinds.JOBS, job_id,
                        {k: v for k, v in changes.items() if k not in ("devices", "selected")})
        rows = changes.get("devices") or ()
        if rows:
            self._store.put_many(store_kinds.JOB_DEVICES, ((f"{job_id}/{row['deviceId']}", row) for row in rows))

    def saved_jobs(self) -> list[dict[str, Any]]:
        """Every saved job as one snapshot with all its device rows (what `JobScheduler.restore` reads)."""
        jobs = {str(saved["job"]["jobId"]): saved for saved in self._store.load(store_kinds.JOBS)}
        rows: dict[str, dict[str, dict[str, Any]]] = {job_id: {} for job_id in jobs}
        for job_id, saved in list(jobs.items()):  # snapshots written whole by earlier versions: split them
            if saved.get("devices"):
                self.save_job(saved)
                jobs[job_id] = {k: v for k, v in saved.items() if k != "devices"}
        for row in self._store.load(store_kinds.JOB_DEVICES):
            if row.get("jobId") in rows:
                rows[row["jobId"]][row["deviceId"]] = row
        selected: dict[str, list[str]] = {job_id: [] for job_id in jobs}
        for record in self._store.load(store_kinds.JOB_SELECTIONS):
            if record.get("jobId") in selected:
                selected[record["jobId"]].append(record["deviceIds"])
        return [{**saved, "devices": list(rows[job_id].values()),
                 "selected": [device_id for chunk in selected[job_id] for device_id in chunk]}
                for job_id, saved in jobs.items()]

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
