"""IoT Hub over MQTT: session events -> hub model calls, and device-bound traffic -> the device.

The server (mqtt/server.py) owns sockets and hands each connection's session events here. This module
owns the connections and persistent sessions of every client and decides: which kind of client a
CONNECT is, by the username's shape (``DeviceFront._authenticate``: a DPS registration client goes to
dps_front.py, anything else is a hub device), device auth, and the twin, method and telemetry topics.

Device-bound traffic goes by subscription, as on IoT Hub: a desired patch only to a device subscribed
to `$iothub/twin/PATCH/properties/desired/#` (or any filter matching it, `#` included), a method
request only to one subscribed to `$iothub/methods/POST/#` (the hub answers 404103 otherwise), a
cloud-to-device message at QoS 1 only to one subscribed to `devices/{id}/messages/devicebound/#` (the
hub keeps it queued until then; the device's PUBACK completes it); a twin answer always to the
connection that asked. A persistent session (clean_session=0) keeps its
subscriptions across reconnects and emulator restarts (through the hub's store), because the SDKs
never subscribe again after a reconnect; clean_session=1 drops them. Every request is answered
afresh: a `$rid` is the client's correlation value, reused freely, never a key to replay an answer.
Nothing ever reaches another device's connection. A will on the device's telemetry topic becomes its
telemetry (`iothub-MessageType: Will`) when the connection ends without DISCONNECT; RETAIN=1 telemetry
is marked `mqtt-retain: true` and nothing is retained.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hubsettings.sas import parse_token

from ..hub import DeviceNotFound, Hub, HubError, MethodCall
from ..hub.c2d import CloudMessage
from ..hub.clock import iso_timestamp
from .dps_front import DpsFront, DpsIdentity, dps_subscription_allowed, parse_dps_username
from .front_common import (ClientConnection, RefusedConnect, Violation, parse_json, parse_properties,
                           parse_topic_query)
from .session import ConnectionLost, ConnectRequested, Delivered, MessageReceived, Subscribed, Unsubscribed
from .session_state import SessionState
from .topics import TopicShape, matches_any, may_match_shape
from ..jsontext import compact_json

log = logging.getLogger("emulator.mqtt")

TWIN_GET = "$iothub/twin/GET/"
TWIN_PATCH_REPORTED = "$iothub/twin/PATCH/properties/reported/"
METHOD_RESPONSE = "$iothub/methods/res/"
METHOD_REQUEST = "$iothub/methods/POST/"
DESIRED_PATCH = "$iothub/twin/PATCH/properties/desired/"
#: The token-expiry heap is rebuilt from the live connections once stale entries (reconnects, closed
#: connections) outnumber them by this factor (plus a little slack), so it stays O(live devices).
TOKEN_HEAP_SLACK = 64


@dataclass(frozen=True)
class WillMessage:
    """A device's will, from its CONNECT: sent as its telemetry if the connection ends without DISCONNECT."""
    device_id: str
    property_bag: str  # what follows `devices/{id}/messages/events/` in the will topic
    payload: bytes
    retain: bool


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    token_expiry: float  # IoT Hub drops a connection whose token expires (the SDK renews before)
    model_id: str | None = None  # Plug and Play devices announce theirs in the username


def parse_hub_username(username: str) -> tuple[str, str, str | None]:
    """`{host}/{deviceId}[/{moduleId}]/?api-version=...` -> (host, device id, module id or None)."""
    path = username.split("/?", 1)[0]
    parts = path.split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise RefusedConnect(f"username '{username[:100]}' is not {{HostName}}/{{deviceId}}/?api-version=...",
                             hint="set the username to {HostName}/{deviceId}/?api-version=2021-04-12")
    module = parts[2] if len(parts) > 2 and parts[2] and "=" not in parts[2] else None
    return parts[0], parts[1], module


class DeviceFront:
    """Implements hub.DeviceConnections: the hub pushes desired patches and method requests through it."""

    def __init__(self, hub: Hub):
        self.hub = hub
        # Persistent sessions by (kind, MQTT client id): a DPS registration id may equal a device id.
        self._sessions: dict[tuple[str, str], SessionState] = {}
        self._live: dict[str, ClientConnection] = {}  # device id -> its one live connection
        self._identities: dict[ClientConnection, DeviceIdentity | DpsIdentity] = {}  # who each connection is
        # (token expiry, device id) for every accepted device connection, earliest first. Lazy deletion:
        # an entry is checked against the device's live connection when it comes due, so a reconnect
        # (token renewal) or a disconnect needs no removal here; expire_tokens() only touches due entries.
        self._token_expiries: list[tuple[float, str]] = []
        self.dps = DpsFront(hub)  # DPS registration clients' auth and topics
        # Cloud-to-device messages published and not yet PUBACKed: device id -> packet id -> lock token.
        # Kept with the persistent session, which resends them with DUP on the next connection.
        self._cloud_in_flight: dict[str, dict[int, str]] = {}
        # Connections holding PUBACKs of telemetry not yet committed, flushed by make_telemetry_durable().
        self._awaiting_commit: dict[ClientConnection, None] = {}  # (an ordered set)
        self._commit_scheduled = False
        self._wills: dict[ClientConnection, WillMessage] = {}  # connections whose end sends a will
        for record in hub.saved_sessions():  # persistent sessions of devices, from before a restart
            self._sessions[("hub", record["client_id"])] = SessionState(
                record["client_id"], {str(f): int(q) for f, q in record.get("subscriptions", {}).items()})
        hub.attach_connections(self)

    # ---- events from the server ------------------------------------------------------------------
    def handle_events(self, client: ClientConnection, events: list[Any]) -> None:
        # Telemetry is acknowledged only once committed. The session queues each PUBACK at once, but it
        # reaches the socket only at a flush, so a connection with uncommitted telemetry waits for the
        # group commit: one store transaction for every connection's messages read in this turn of the
        # event loop. Before anything else is handled (it may flush this or another connection) and
        # before the front pushes to a device, the messages are committed first.
        for event in events:
            if not _is_telemetry(event):
                self.make_telemetry_durable()
            if isinstance(event, ConnectRequested):
                self._on_connect(client, event)
            elif isinstance(event, MessageReceived):
                self._on_message(client, event)
            elif isinstance(event, (Subscribed, Unsubscribed)):
                self._on_subscriptions_changed(client, event)
            elif isinstance(event, Delivered):
                self._on_delivered(client, event.packet_id)
            elif isinstance(event, ConnectionLost):
                self._log_connection_lost(client, event)
                if event.clean:  # DISCONNECT discards the will [MQTT-3.1.2-10]
                    self._wills.pop(client, None)
                self.client_closed(client)
        if client in self._awaiting_commit:
            self._schedule_commit()
        else:
            client.flush()

    def _schedule_commit(self) -> None:
        if self._commit_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven without an event loop (tests): commit now
            self.make_telemetry_durable()
            return
        self._commit_scheduled = True
        loop.call_soon(self.make_telemetry_durable)

    def make_telemetry_durable(self) -> bool:
        """Commit the telemetry received so far, then flush the connections waiting for it (with their
        PUBACKs). On a store error those connections close without their queued packets (no PUBACK for
        unstored messages: the devices send them again). Call before anything flushes a connection."""
        self._commit_scheduled = False
        waiting, self._awaiting_commit = self._awaiting_commit, {}
        try:
            self.hub.commit_telemetry()
            stored = True
        except Exception:  # noqa: BLE001 - one bad write must not take the front down
            log.exception("could not store telemetry; closing %d connection(s) without acknowledging it "
                          "(the devices send it again)", len(waiting))
            stored = False
        for client in waiting:
            if not stored:
                client.connection.connection_lost()
            client.flush()
        return stored

    def client_closed(self, client: ClientConnection) -> None:
        identity = self._identities.pop(client, None)
        if isinstance(identity, DeviceIdentity) and self._live.get(identity.device_id) is client:
            del self._live[identity.device_id]
            self.hub.device_disconnected(identity.device_id)
            log.info("device %s disconnected", identity.device_id)
        will = self._wills.pop(client, None)
        if will is not None:
            self._send_will(will)

    def discard_wills(self) -> None:
        """The emulator is stopping: the connections it is about to close send no will (a will reports a
        device's connection lost, not the hub going away)."""
        self._wills.clear()

    def live_devices(self) -> list[str]:
        return list(self._live)

    def is_subscribed(self, device_id: str, topic: str) -> bool:
        """True when the device is connected and holds a subscription matching ``topic`` (one of its own
        device-bound topics): what decides whether device-bound traffic is delivered now."""
        client = self._live.get(device_id)
        session = client.connection.session if client is not None else None
        return session is not None and matches_any(session.subscriptions, topic)

    def can_receive_method(self, device_id: str, method_name: str) -> bool:
        """hub.DeviceConnections: connected and subscribed to this method's requests."""
        return self.is_subscribed(device_id, _method_topic(method_name, "0"))

    def _log_connection_lost(self, client: ClientConnection, event: ConnectionLost) -> None:
        if event.clean:
            log.debug("%s: the client disconnected", client.peer)
        else:
            identity = self._identities.get(client)
            who = f"device {identity.device_id}" if isinstance(identity, DeviceIdentity) else client.peer
            log.info("%s: connection closed: %s", who, event.reason)

    def expire_tokens(self) -> None:
        """Close the connections whose SAS token has expired (call periodically)."""
        now = self.hub.now()
        heap = self._token_expiries
        while heap and heap[0][0] <= now:
            _, device_id = heapq.heappop(heap)
            # Stale when the device disconnected or reconnected since (its live connection, if any, has
            # its own entry); the test is the one a full scan would make for this device.
            client = self._live.get(device_id)
            identity = self._identities.get(client) if client is not None else None
            if isinstance(identity, DeviceIdentity) and identity.token_expiry <= now:
                log.info("device %s: its SAS token expired; closing the connection", device_id)
                self.disconnect_device(device_id)
                self.hub.device_disconnected(device_id)

    def _track_token_expiry(self, identity: DeviceIdentity) -> None:
        """Called once the device's connection is live (in `_live` and `_identities`)."""
        heap = self._token_expiries
        heapq.heappush(heap, (identity.token_expiry, identity.device_id))
        if len(heap) > 2 * len(self._live) + TOKEN_HEAP_SLACK:  # mostly stale entries: rebuild
            heap[:] = [(i.token_expiry, i.device_id) for client in self._live.values()
                       if isinstance(i := self._identities.get(client), DeviceIdentity)]
            heapq.heapify(heap)

    # ---- CONNECT ---------------------------------------------------------------------------------
    def _on_connect(self, client: ClientConnection, event: ConnectRequested) -> None:
        connect = event.connect
        try:
            identity = self._authenticate(connect)
        except RefusedConnect as e:
            log.info("%s: CONNECT refused for client id '%s' (CONNACK %d): %s%s", client.peer,
                     connect.client_id[:128], e.return_code, e, f"; {e.hint}" if e.hint else "")
            client.connection.refuse(e.return_code)
            return
        if isinstance(identity, DeviceIdentity):
            previous = self._live.get(identity.device_id)
            if previous is not None and previous is not client:
                # One connection per device, as on IoT Hub: the newcomer takes over.
                log.info("device %s connected again: closing its previous connection", identity.device_id)
                self._identities.pop(previous, None)
                previous.connection.close()
                previous.flush()
        kind = "hub" if isinstance(identity, DeviceIdentity) else "dps"
        if kind == "hub" and connect.clean_session and ("hub", connect.client_id) in self._sessions:
            self.hub.delete_session(connect.client_id)  # clean_session=1 ends the persistent session
        session, present = self._session_for((kind, connect.client_id), connect.clean_session)
        self._identities[client] = identity
        client.connection.accept(session, present, subscription_allowed=_subscription_rule(identity))
        if isinstance(identity, DeviceIdentity):
            self._live[identity.device_id] = client
            self._track_token_expiry(identity)
            log.info("device %s connected from %s (clean_session=%d, session present=%d, subscriptions: %s)",
                     identity.device_id, client.peer, connect.clean_session, present,
                     ", ".join(session.subscriptions) or "none")
            self.hub.device_connected(identity.device_id, identity.model_id)
            self._keep_will(client, identity.device_id, connect)
            if not present:
                # A new session has none of the earlier publishes: those messages go out again.
                self._cloud_in_flight.pop(identity.device_id, None)
                self.hub.c2d.release_all(identity.device_id)
            self.deliver_cloud_messages(identity.device_id)
        else:
            log.info("DPS registration %s connected from %s", identity.registration_id, client.peer)

    def _keep_will(self, client: ClientConnection, device_id: str, connect: Any) -> None:
        """IoT Hub forwards a will as telemetry only when its topic is the device's telemetry topic."""
        will = connect.will
        if will is None:
            return
        events = f"devices/{device_id}/messages/events"
        if will.topic != events and not will.topic.startswith(events + "/"):
            log.info("device %s: ignoring its will on topic '%s': IoT Hub only sends a will published to "
                     "%s/ (or %s/{property bag}) as telemetry", device_id, will.topic[:200], events, events)
            return
        self._wills[client] = WillMessage(device_id, will.topic[len(events) + 1:], will.payload, will.retain)

    def _send_will(self, will: WillMessage) -> None:
        """The connection ended without DISCONNECT: the will goes to the telemetry stream, marked
        `iothub-MessageType: Will`, unless the device was deleted meanwhile."""
        if self.hub.registry.find(will.device_id) is None:
            return
        system, application = _telemetry_properties(will.property_bag, retain=will.retain)
        application["iothub-MessageType"] = "Will"
        self.hub.receive_telemetry(will.device_id, will.payload, application, system, commit=False)
        log.info("device %s: connection lost without DISCONNECT; its will was sent as telemetry", will.device_id)
        self._schedule_commit()

    def _authenticate(self, connect: Any) -> DeviceIdentity | DpsIdentity:
        """Who the client is, decided by the username's shape: `{scope}/registrations/{id}/...` is a
        DPS registration client (dps_front.py), anything else a hub device. RefusedConnect if neither."""
        username = connect.username or ""
        try:
            password = (connect.password or b"").decode("utf-8")
        except UnicodeDecodeError:
            raise RefusedConnect("the password is not UTF-8") from None
        dps = parse_dps_username(username)
        if dps is not None:
            scope, registration_id = dps
            return self.dps.authenticate(connect.client_id, scope, registration_id, password)
        return self._authenticate_device(connect.client_id, username, password)

    def _authenticate_device(self, client_id: str, username: str, password: str) -> DeviceIdentity:
        _, device_id, module_id = parse_hub_username(username)
        if module_id is not None:
            raise RefusedConnect("module identities are not supported by the emulator",
                                 hint="connect as the device itself (username {HostName}/{deviceId}/?api-version=...)")
        if device_id != client_id:
            raise RefusedConnect("the username's device id differs from the client id",
                                 hint="use the device id as the MQTT client id")
        try:
            self.hub.authenticate_device(device_id, password)
        except DeviceNotFound as e:
            raise RefusedConnect(e.message, hint="create the device first (service CLI or registry API)") from None
        except HubError as e:
            raise RefusedConnect(e.message, hint=f"the password must be a SAS token with sr={self.hub.host_name}"
                                 f"/devices/{device_id}, an expiry in the future, signed with the device's "
                                 "primary or secondary key") from None
        query = dict(parse_properties(username.partition("/?")[2]))
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

    # ---- subscriptions ---------------------------------------------------------------------------
    def _on_subscriptions_changed(self, client: ClientConnection, event: Subscribed | Unsubscribed) -> None:
        identity = self._identities.get(client)
        if isinstance(event, Subscribed) and event.refused:
            allowed = ("$dps/registrations/res/#" if isinstance(identity, DpsIdentity) else
                       "filters matching its own topics: $iothub/methods/POST/#, $iothub/twin/res/#, "
                       "$iothub/twin/PATCH/properties/desired/#, devices/{its id}/messages/devicebound/#, #")
            log.info("%s: SUBSCRIBE refused (SUBACK 0x80) for %s; it may subscribe to %s", _who(identity, client),
                     ", ".join(repr(f[:200]) for f in event.refused), allowed)
        if not isinstance(identity, DeviceIdentity):
            return
        session, connect = client.connection.session, client.connection.connect
        assert session is not None and connect is not None
        log.debug("device %s: %s %s", identity.device_id, type(event).__name__.lower(),
                  ", ".join(t if isinstance(t, str) else t[0] for t in event.topics) or "nothing")
        if not connect.clean_session and self._sessions.get(("hub", connect.client_id)) is session:
            self.hub.save_session(connect.client_id, {"client_id": connect.client_id,
                                                      "subscriptions": dict(session.subscriptions)})
        if isinstance(event, Subscribed) and event.topics:
            self.hub.device_subscribed(identity.device_id)  # method calls waiting for this subscription
            self.deliver_cloud_messages(identity.device_id)  # messages queued until it subscribed

    # ---- messages from devices -------------------------------------------------------------------
    def _on_message(self, client: ClientConnection, event: MessageReceived) -> None:
        identity = self._identities.get(client)
        try:
            if isinstance(identity, DeviceIdentity):
                self._on_device_message(client, identity.device_id, event)
            elif isinstance(identity, DpsIdentity):
                self.dps.on_message(client, identity, event)
        except Violation as e:
            log.info("%s: closing the connection: %s", _who(identity, client), e)
            client.connection.close()

    def _on_device_message(self, client: ClientConnection, device_id: str, event: MessageReceived) -> None:
        topic = event.topic
        if topic.startswith(TWIN_GET) or topic.startswith(TWIN_PATCH_REPORTED):
            self._on_twin_request(client, device_id, event)
        elif topic.startswith(METHOD_RESPONSE):
            path, query = parse_topic_query(topic)
            status = path[len(METHOD_RESPONSE):].strip("/")
            if not status.lstrip("-").isdigit() or "$rid" not in query:
                raise Violation(f"malformed method response topic '{topic[:200]}'")
            if not self.hub.method_response(device_id, query["$rid"], int(status), event.payload):
                log.info("device %s answered method request %s, which is no longer awaited",
                         device_id, query["$rid"])
        elif topic == (events := f"devices/{device_id}/messages/events") or topic.startswith(events + "/"):
            system, application = _telemetry_properties(topic[len(events) + 1:], retain=event.retain)
            self.hub.receive_telemetry(device_id, event.payload, application, system, commit=False)
            self._awaiting_commit[client] = None  # its PUBACK waits for the commit
        else:
            raise Violation(f"device {device_id} published to a topic it may not use: '{topic[:200]}'")

    def _on_twin_request(self, client: ClientConnection, device_id: str, event: MessageReceived) -> None:
        path, query = parse_topic_query(event.topic)
        rid = query.get("$rid")
        if not rid:
            raise Violation(f"twin request without $rid: '{event.topic[:200]}'")
        log.debug("device %s: twin %s $rid=%s", device_id, "GET" if path.startswith(TWIN_GET) else "reported patch",
                  rid[:64])
        try:
            if path.startswith(TWIN_GET):
                body = compact_json(self.hub.device_twin(device_id)).encode()
                topic, payload = f"$iothub/twin/res/200/?$rid={rid}", body
            else:
                try:
                    patch = parse_json(event.payload)
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
        # To the connection that asked, subscribed to $iothub/twin/res/# or not (the SDK may ask first).
        client.connection.publish(topic, payload, qos=1)

    # ---- hub.DeviceConnections: device-bound traffic ----------------------------------------------------
    def send_desired_patch(self, device_id: str, patch: dict[str, Any]) -> None:
        self.make_telemetry_durable()  # the flush below may carry a telemetry PUBACK
        client = self._live.get(device_id)
        topic = f"{DESIRED_PATCH}?$version={patch.get('$version')}"
        if client is None or not self.is_subscribed(device_id, topic):
            log.debug("device %s: desired patch not sent (not subscribed to %s#)", device_id, DESIRED_PATCH)
            return
        client.connection.publish(topic, compact_json(patch).encode("utf-8"), qos=1)
        client.flush()

    def send_method_request(self, device_id: str, call: MethodCall) -> None:
        self.make_telemetry_durable()
        client = self._live.get(device_id)
        if client is None:
            return
        # QoS 0 as on IoT Hub: a method must not run twice because a request was resent on reconnect.
        client.connection.publish(_method_topic(call.method_name, call.rid), call.request_body(), qos=0)
        client.flush()

    def disconnect_device(self, device_id: str) -> None:
        self.make_telemetry_durable()
        client = self._live.pop(device_id, None)
        if client is None:
            return
        self._identities.pop(client, None)
        client.connection.close()
        client.flush()

    def forget_device(self, device_id: str) -> None:
        """The device was deleted: a device created later with the same id gets no persistent session
        (subscriptions, unacknowledged publishes) of the old one. The hub deletes the stored copy."""
        self._sessions.pop(("hub", device_id), None)
        self._cloud_in_flight.pop(device_id, None)

    def deliver_cloud_messages(self, device_id: str) -> None:
        """hub.DeviceConnections: publish the device's waiting cloud-to-device messages, if it is subscribed."""
        self.make_telemetry_durable()
        client = self._live.get(device_id)
        if client is None or not self.is_subscribed(device_id, f"{_cloud_topic_prefix(device_id)}x"):
            return  # IoT Hub keeps them until the device subscribes to devices/{id}/messages/devicebound/#
        in_flight = self._cloud_in_flight.setdefault(device_id, {})
        for message in self.hub.c2d.take_for_delivery(device_id):
            packet_id = client.connection.publish(cloud_message_topic(message), message.body, qos=1)
            if packet_id is None:  # the connection is closing: the message waits for the next one
                self.hub.c2d.release(device_id, message.lock_token)
                continue
            in_flight[packet_id] = message.lock_token
        client.flush()

    def _on_delivered(self, client: ClientConnection, packet_id: int) -> None:
        identity = self._identities.get(client)
        if isinstance(identity, DeviceIdentity):
            lock_token = self._cloud_in_flight.get(identity.device_id, {}).pop(packet_id, None)
            if lock_token is not None:
                self.hub.c2d.complete(identity.device_id, lock_token)


def _telemetry_properties(bag: str, *, retain: bool) -> tuple[dict[str, str], dict[str, str]]:
    """The property bag of `devices/{id}/messages/events/{bag}` -> (system, application) properties.
    IoT Hub retains nothing: a PUBLISH with RETAIN=1 becomes a message with `mqtt-retain: true`."""
    pairs = parse_properties(bag)
    system = {k: v for k, v in pairs if k.startswith("$.")}
    application = {k: v for k, v in pairs if not k.startswith("$.")}
    if retain:
        application["mqtt-retain"] = "true"
    return system, application


def _is_telemetry(event: Any) -> bool:
    return isinstance(event, MessageReceived) and "/messages/events" in event.topic


def _cloud_topic_prefix(device_id: str) -> str:
    return f"devices/{device_id}/messages/devicebound/"


def cloud_message_topic(message: CloudMessage) -> str:
    """`devices/{id}/messages/devicebound/{property bag}`: system properties as `$.mid`, `$.cid`, `$.uid`,
    `$.to`, `$.ct`, `$.ce`, `$.exp`, then `iothub-ack` and the application properties, URL-encoded."""
    pairs: list[tuple[str, str | None]] = [
        ("$.mid", message.message_id), ("$.cid", message.correlation_id), ("$.uid", message.user_id),
        ("$.to", message.to), ("$.ct", message.content_type), ("$.ce", message.content_encoding),
        ("$.exp", iso_timestamp(message.expiry_time)),
        ("iothub-ack", message.ack if message.ack != "none" else None), *message.properties.items()]
    bag = "&".join(f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}"
                   for k, v in pairs if v is not None)
    return _cloud_topic_prefix(message.device_id) + bag


def _method_topic(method_name: str, rid: str) -> str:
    return f"{METHOD_REQUEST}{urllib.parse.quote(method_name, safe='')}/?$rid={rid}"


def _device_bound_shapes(device_id: str) -> tuple[TopicShape, ...]:
    """Every topic the hub publishes to a device: methods, twin answers, desired patches, C2D."""
    return (("$iothub", "methods", "POST", None, None), ("$iothub", "twin", "res", None, None),
            ("$iothub", "twin", "PATCH", "properties", "desired", None),
            ("devices", device_id, "messages", "devicebound", None))


def _subscription_rule(identity: DeviceIdentity | DpsIdentity) -> Callable[[str], bool]:
    """Which topic filters a client may subscribe to: a device any filter matching one of its own
    device-bound topics (`#`, `$iothub/#`, `devices/+/messages/devicebound/#` included: delivery only
    ever matches its own traffic); a DPS client `$dps/...`. Anything else (`devices/other/#`, `a/b`)
    gets SUBACK 0x80."""
    if isinstance(identity, DpsIdentity):
        return dps_subscription_allowed
    shapes = _device_bound_shapes(identity.device_id)
    return lambda topic_filter: any(may_match_shape(topic_filter, shape) for shape in shapes)


def _who(identity: DeviceIdentity | DpsIdentity | None, client: ClientConnection) -> str:
    if isinstance(identity, DeviceIdentity):
        return f"device {identity.device_id}"
    if isinstance(identity, DpsIdentity):
        return f"DPS registration {identity.registration_id}"
    return client.peer


class _BadRequest(Exception):
    pass

