"""IoT Hub and DPS over MQTT: session events -> hub model calls, and device-bound traffic -> the device.

The server (mqtt/server.py) owns sockets and hands each connection's session events here. This module
decides: CONNECT auth (hub device or DPS registration, by the username's shape), the twin, method and
telemetry topics, and the DPS topics. Device-bound traffic goes to the device's live connection whatever
its subscriptions (the SDK never resubscribes after a reconnect), and never to another device's.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from hubsettings.sas import SasError, SasToken, parse_token

from ..hub import Hub, HubError, MethodCall
from .codec import CONNACK_IDENTIFIER_REJECTED, CONNACK_NOT_AUTHORIZED
from .session import (ConnectionLost, ConnectRequested, MessageReceived, ServerConnection, SessionState)

log = logging.getLogger("emulator.mqtt")

TWIN_GET = "$iothub/twin/GET/"
TWIN_PATCH_REPORTED = "$iothub/twin/PATCH/properties/reported/"
METHOD_RESPONSE = "$iothub/methods/res/"
DPS_REGISTER = "$dps/registrations/PUT/iotdps-register/"
DPS_OPERATION_STATUS = "$dps/registrations/GET/iotdps-get-operationstatus/"
MAX_DPS_OPERATIONS = 1000  # answered operation-status polls are kept for the latest registrations
REMEMBERED_REPLIES = 64  # per device: replies to recent twin requests, re-sent when a request is repeated


class Link(Protocol):
    """One network connection, as the front sees it."""

    connection: ServerConnection
    peer: str

    def flush(self) -> None:
        """Write what the session queued; close the transport once the session is closed."""


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    token_expiry: float  # IoT Hub drops a connection whose token expires (the SDK renews before)
    model_id: str | None = None  # Plug and Play devices announce theirs in the username


@dataclass(frozen=True)
class DpsIdentity:
    id_scope: str
    registration_id: str
    token: SasToken


class RefusedConnect(Exception):
    def __init__(self, reason: str, return_code: int = CONNACK_NOT_AUTHORIZED):
        super().__init__(reason)
        self.return_code = return_code


def parse_dps_username(username: str) -> tuple[str, str] | None:
    """`{idScope}/registrations/{registrationId}/api-version=...` -> (scope, registration id)."""
    parts = username.split("/")
    if len(parts) >= 3 and parts[1] == "registrations" and parts[0] and parts[2]:
        return parts[0], parts[2]
    return None


def parse_hub_username(username: str) -> tuple[str, str, str | None]:
    """`{host}/{deviceId}[/{moduleId}]/?api-version=...` -> (host, device id, module id or None)."""
    path = username.split("/?", 1)[0]
    parts = path.split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise RefusedConnect(f"username '{username[:100]}' is not {{HostName}}/{{deviceId}}/?api-version=...")
    module = parts[2] if len(parts) > 2 and parts[2] and "=" not in parts[2] else None
    return parts[0], parts[1], module


def _query(topic: str) -> tuple[str, dict[str, str]]:
    path, _, query = topic.partition("?")
    return path, dict(_properties(query))


def _properties(encoded: str) -> list[tuple[str, str]]:
    """`%24.mid=1&k=v` -> pairs. '+' is a plus here (the SDKs quote, not quote_plus)."""
    pairs = []
    for part in encoded.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((urllib.parse.unquote(key), urllib.parse.unquote(value)))
    return pairs


def _json(payload: bytes) -> Any:
    """Decode a JSON payload; ValueError when it is not JSON (or nests too deep to decode)."""
    try:
        return json.loads(payload.decode("utf-8")) if payload.strip() else None
    except RecursionError:
        raise ValueError("the JSON nests too deep") from None


class DeviceFront:
    """Implements hub.DeviceLink: the hub pushes desired patches and method requests through it."""

    def __init__(self, hub: Hub):
        self.hub = hub
        # Persistent sessions by (kind, MQTT client id): a DPS registration id may equal a device id.
        self._sessions: dict[tuple[str, str], SessionState] = {}
        self._live: dict[str, Link] = {}  # device id -> its one live connection
        self._identities: dict[Link, DeviceIdentity | DpsIdentity] = {}  # who each connection is
        self._replies: dict[str, OrderedDict[str, tuple[str, bytes]]] = {}  # device -> rid -> reply
        self._dps_operations: OrderedDict[str, dict[str, Any]] = OrderedDict()  # the latest, by operation id
        hub.attach_link(self)

    # ---- events from the server ------------------------------------------------------------------
    def handle_events(self, link: Link, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, ConnectRequested):
                self._on_connect(link, event)
            elif isinstance(event, MessageReceived):
                self._on_message(link, event)
            elif isinstance(event, ConnectionLost):
                log.debug("%s: connection lost (%s)", link.peer, event.reason)
                self.link_closed(link)
        link.flush()

    def link_closed(self, link: Link) -> None:
        identity = self._identities.pop(link, None)
        if isinstance(identity, DeviceIdentity) and self._live.get(identity.device_id) is link:
            del self._live[identity.device_id]
            self.hub.device_disconnected(identity.device_id)
            log.info("device %s disconnected", identity.device_id)

    def live_devices(self) -> list[str]:
        return list(self._live)

    def expire_tokens(self) -> None:
        """Close the connections whose SAS token has expired (call periodically)."""
        now = self.hub.now()
        for device_id, link in list(self._live.items()):
            identity = self._identities.get(link)
            if isinstance(identity, DeviceIdentity) and identity.token_expiry <= now:
                log.info("device %s: its SAS token expired; closing the connection", device_id)
                self.disconnect_device(device_id)
                self.hub.device_disconnected(device_id)

    # ---- CONNECT ---------------------------------------------------------------------------------
    def _on_connect(self, link: Link, event: ConnectRequested) -> None:
        connect = event.connect
        try:
            identity = self._authenticate(connect)
        except RefusedConnect as e:
            log.warning("%s: connection refused for client '%s': %s", link.peer, connect.client_id[:128], e)
            link.connection.refuse(e.return_code)
            return
        if isinstance(identity, DeviceIdentity):
            previous = self._live.get(identity.device_id)
            if previous is not None and previous is not link:
                # One connection per device, as on IoT Hub: the newcomer takes over.
                log.info("device %s connected again: closing its previous connection", identity.device_id)
                self._identities.pop(previous, None)
                previous.connection.close()
                previous.flush()
        kind = "hub" if isinstance(identity, DeviceIdentity) else "dps"
        session, present = self._session_for((kind, connect.client_id), connect.clean_session)
        self._identities[link] = identity
        link.connection.accept(session, present, subscription_allowed=_subscription_rule(identity))
        if isinstance(identity, DeviceIdentity):
            self._live[identity.device_id] = link
            log.info("device %s connected from %s", identity.device_id, link.peer)
            self.hub.device_connected(identity.device_id, identity.model_id)
        else:
            log.info("DPS registration %s connected from %s", identity.registration_id, link.peer)

    def _authenticate(self, connect: Any) -> DeviceIdentity | DpsIdentity:
        username = connect.username or ""
        try:
            password = (connect.password or b"").decode("utf-8")
        except UnicodeDecodeError:
            raise RefusedConnect("the password is not UTF-8") from None
        dps = parse_dps_username(username)
        if dps is not None:
            scope, registration_id = dps
            if connect.client_id != registration_id:
                raise RefusedConnect("the client id differs from the registration id", CONNACK_IDENTIFIER_REJECTED)
            try:
                token = parse_token(password)
                self.hub.provisioning.attest(scope, registration_id, token, self.hub.now())
            except (SasError, HubError) as e:
                raise RefusedConnect(str(e)) from None
            return DpsIdentity(scope, registration_id, token)
        _, device_id, module_id = parse_hub_username(username)
        if module_id is not None:
            raise RefusedConnect("module identities are not supported by the emulator")
        if device_id != connect.client_id:
            raise RefusedConnect("the username's device id differs from the client id")
        try:
            self.hub.authenticate_device(device_id, password)
        except HubError as e:
            raise RefusedConnect(e.message) from None
        query = dict(_properties(username.partition("/?")[2]))
        return DeviceIdentity(device_id, parse_token(password).expiry, query.get("model-id") or None)

    def _session_for(self, key: tuple[str, str], clean_session: bool) -> tuple[SessionState, bool]:
        existing = self._sessions.get(key)
        if clean_session or existing is None:
            session = SessionState(key[1])
            if not clean_session:
                self._sessions[key] = session
            else:
                self._sessions.pop(key, None)
            return session, False
        return existing, True

    # ---- messages from devices -------------------------------------------------------------------
    def _on_message(self, link: Link, event: MessageReceived) -> None:
        identity = self._identities.get(link)
        try:
            if isinstance(identity, DeviceIdentity):
                self._on_device_message(link, identity.device_id, event)
            elif isinstance(identity, DpsIdentity):
                self._on_dps_message(link, identity, event)
        except _Violation as e:
            log.warning("%s: closing the connection: %s", link.peer, e)
            link.connection.close()

    def _on_device_message(self, link: Link, device_id: str, event: MessageReceived) -> None:
        topic = event.topic
        if topic.startswith(TWIN_GET) or topic.startswith(TWIN_PATCH_REPORTED):
            self._on_twin_request(link, device_id, event)
        elif topic.startswith(METHOD_RESPONSE):
            path, query = _query(topic)
            status = path[len(METHOD_RESPONSE):].strip("/")
            if not status.lstrip("-").isdigit() or "$rid" not in query:
                raise _Violation(f"malformed method response topic '{topic[:200]}'")
            if not self.hub.method_response(device_id, query["$rid"], int(status), event.payload):
                log.info("device %s answered method request %s, which is no longer awaited",
                         device_id, query["$rid"])
        elif topic == (events := f"devices/{device_id}/messages/events") or topic.startswith(events + "/"):
            if event.duplicate:
                return  # a resend of a message already taken
            pairs = _properties(topic[len(events) + 1:])
            system = {k: v for k, v in pairs if k.startswith("$.")}
            application = {k: v for k, v in pairs if not k.startswith("$.")}
            self.hub.receive_telemetry(device_id, event.payload, application, system)
        else:
            raise _Violation(f"device {device_id} published to a topic it may not use: '{topic[:200]}'")

    def _on_twin_request(self, link: Link, device_id: str, event: MessageReceived) -> None:
        path, query = _query(event.topic)
        rid = query.get("$rid")
        if not rid:
            raise _Violation(f"twin request without $rid: '{event.topic[:200]}'")
        remembered = self._replies.setdefault(device_id, OrderedDict())
        if rid in remembered:
            # A resend (DUP, or after a reconnect) of a request already handled: same answer, applied once.
            topic, payload = remembered[rid]
            link.connection.publish(topic, payload, qos=1)
            return
        try:
            if path.startswith(TWIN_GET):
                body = json.dumps(self.hub.device_twin(device_id), separators=(",", ":")).encode()
                topic, payload = f"$iothub/twin/res/200/?$rid={rid}", body
            else:
                try:
                    patch = _json(event.payload)
                except ValueError:
                    raise _BadRequest("the reported properties patch is not JSON") from None
                version = self.hub.report_properties(device_id, patch)
                topic, payload = f"$iothub/twin/res/204/?$rid={rid}&$version={version}", b""
        except Exception as e:  # noqa: BLE001 - a twin request must always be answered, or the SDK hangs
            if isinstance(e, HubError):
                status, code, message = e.http_status, e.error_code, e.message
            elif isinstance(e, _BadRequest):
                status, code, message = 400, 400004, str(e)
            else:
                log.exception("device %s: twin request failed", device_id)
                status, code, message = 500, 500001, "internal error"
            log.info("device %s: twin request failed (%s): %s", device_id, status, message)
            topic = f"$iothub/twin/res/{status}/?$rid={rid}"
            payload = json.dumps({"errorCode": code, "message": message}).encode()
        remembered[rid] = (topic, payload)
        while len(remembered) > REMEMBERED_REPLIES:
            remembered.popitem(last=False)
        link.connection.publish(topic, payload, qos=1)

    # ---- DPS -------------------------------------------------------------------------------------
    def _on_dps_message(self, link: Link, identity: DpsIdentity, event: MessageReceived) -> None:
        path, query = _query(event.topic)
        rid = query.get("$rid")
        if not rid:
            raise _Violation(f"DPS request without $rid: '{event.topic[:200]}'")
        if path.startswith(DPS_REGISTER):
            status, body = self._dps_register(identity, event.payload)
        elif path.startswith(DPS_OPERATION_STATUS):
            operation = self._dps_operations.get(query.get("operationId", ""))
            status, body = (200, operation) if operation else (404, _dps_error(404201, "Unknown operation"))
        else:
            raise _Violation(f"DPS client published to '{event.topic[:200]}'")
        link.connection.publish(f"$dps/registrations/res/{status}/?$rid={rid}",
                                json.dumps(body).encode("utf-8"), qos=1)

    def _dps_register(self, identity: DpsIdentity, payload: bytes) -> tuple[int, dict[str, Any]]:
        try:
            request = _json(payload) or {}
        except ValueError:
            return 400, _dps_error(400004, "The registration request is not JSON")
        registration_id = request.get("registrationId", identity.registration_id) if isinstance(request, dict) else None
        if registration_id != identity.registration_id:
            return 400, _dps_error(400004, "registrationId does not match the connection's registration")
        try:
            state = self.hub.register_device(identity.id_scope, identity.registration_id, identity.token)
        except HubError as e:
            log.info("DPS registration %s refused: %s", identity.registration_id, e.message)
            return e.http_status, _dps_error(e.error_code, e.message)
        operation_id = f"4.{uuid.uuid4().hex[:16]}.{uuid.uuid4()}"
        result = {"operationId": operation_id, "status": "assigned", "registrationState": state.to_json()}
        self._dps_operations[operation_id] = result
        while len(self._dps_operations) > MAX_DPS_OPERATIONS:
            self._dps_operations.popitem(last=False)
        log.info("DPS registration %s assigned device %s to %s", identity.registration_id, state.device_id,
                 state.assigned_hub)
        return 200, result

    # ---- hub.DeviceLink: device-bound traffic ----------------------------------------------------
    def send_desired_patch(self, device_id: str, patch: dict[str, Any]) -> None:
        link = self._live.get(device_id)
        if link is None:
            return
        version = patch.get("$version")
        link.connection.publish(f"$iothub/twin/PATCH/properties/desired/?$version={version}",
                                json.dumps(patch, separators=(",", ":")).encode("utf-8"), qos=1)
        link.flush()

    def send_method_request(self, device_id: str, call: MethodCall) -> None:
        link = self._live.get(device_id)
        if link is None:
            return
        # QoS 0 as on IoT Hub: a method must not run twice because a request was resent on reconnect.
        name = urllib.parse.quote(call.method_name, safe="")
        link.connection.publish(f"$iothub/methods/POST/{name}/?$rid={call.rid}", call.request_body(), qos=0)
        link.flush()

    def disconnect_device(self, device_id: str) -> None:
        link = self._live.pop(device_id, None)
        if link is None:
            return
        self._identities.pop(link, None)
        link.connection.close()
        link.flush()

    def forget_device(self, device_id: str) -> None:
        """The device was deleted: a device created later with the same id gets no persistent session
        (subscriptions, unacknowledged publishes) and no remembered twin replies of the old one."""
        self._sessions.pop(("hub", device_id), None)
        self._replies.pop(device_id, None)


def _subscription_rule(identity: DeviceIdentity | DpsIdentity) -> Callable[[str], bool]:
    """Which topic filters a client may subscribe to: the hub's `$iothub/...` topics (they only ever
    deliver its own traffic) and `devices/{its id}/...`; a DPS client `$dps/...`. Anything that names
    or wildcards another device's topics (`devices/other/#`, `devices/+/#`, `#`) gets SUBACK 0x80."""
    if isinstance(identity, DpsIdentity):
        return lambda topic_filter: topic_filter.startswith("$dps/")
    own = f"devices/{identity.device_id}/"
    return lambda topic_filter: topic_filter.startswith("$iothub/") or topic_filter.startswith(own)


class _Violation(Exception):
    """The client broke IoT Hub's rules badly enough that IoT Hub would drop the connection."""


class _BadRequest(Exception):
    pass


def _dps_error(code: int, message: str) -> dict[str, Any]:
    return {"errorCode": code, "trackingId": str(uuid.uuid4()), "message": message,
            "timestampUtc": ""}
