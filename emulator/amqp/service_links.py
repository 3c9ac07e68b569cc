"""The service-facing AMQP nodes of IoT Hub: `$cbs`, `/messages/devicebound` (send cloud-to-device
messages) and `/messages/servicebound/feedback` (receive their delivery feedback).

Each node translates AMQP messages to hub calls and hub errors to the AMQP error conditions the
SDKs translate (Node's azure-iothub: amqp:not-found -> DeviceNotFoundError,
amqp:resource-limit-exceeded -> DeviceMaximumQueueDepthExceededError,
amqp:link:message-size-exceeded -> MessageTooLargeError, amqp:unauthorized-access ->
UnauthorizedError). The Event Hubs-compatible endpoint's nodes (event_hubs.py) are offered beside these.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
import uuid
from typing import Any

from proton import Delivery, Link, Message

from ..hub import ArgumentInvalid, DeviceNotFound, Hub, HubError, IotHubUnauthorizedAccess, MessageTooLarge
from ..hub.c2d import DeviceMaximumQueueDepthExceeded
from .cbs import SERVICE_CONNECT, CbsReplies, CbsRequests, require_service_connect
from .connection import AmqpConnection, InboundNode, LinkHandler, Outcome, Refused
from .event_hubs import EventHubsNodes

log = logging.getLogger("emulator.amqp")

CBS = "/$cbs"
DEVICEBOUND = "/messages/devicebound"
FEEDBACK = "/messages/servicebound/feedback"
FEEDBACK_CONTENT_TYPE = "application/vnd.microsoft.iothub.feedback.json"
_DEVICE_TO = re.compile(r"^/devices/(?P<id>[^/]+)/messages/devicebound/?$")

_CONDITIONS: tuple[tuple[type[HubError], str], ...] = (
    (DeviceNotFound, "amqp:not-found"),
    (DeviceMaximumQueueDepthExceeded, "amqp:resource-limit-exceeded"),
    (MessageTooLarge, "amqp:link:message-size-exceeded"),
    (IotHubUnauthorizedAccess, "amqp:unauthorized-access"),
    (ArgumentInvalid, "amqp:invalid-field"),
)


def amqp_condition(error: HubError) -> Refused:
    """A hub refusal as an AMQP rejection: IoT Hub's condition, and its error name in the description."""
    condition = next((c for kind, c in _CONDITIONS if isinstance(error, kind)), "amqp:internal-error")
    return Refused(condition, f"ErrorCode:{error.error_name};{error.message}")


class ServiceEndpoints:
    """Decides what each link address means on a service connection."""

    def __init__(self, hub: Hub, port: int = 5671):
        self.hub = hub
        self.event_hubs = EventHubsNodes(hub, port)

    def check_plain(self, username: str, password: str) -> str | None:
        """SASL PLAIN: `{policy}@sas.root.{hub}` and a SAS token of that policy with ServiceConnect;
        None to accept, else why not."""
        try:
            policy = self.hub.authenticate_service(password, SERVICE_CONNECT)
        except HubError as e:
            return e.message
        named = username.split("@", 1)[0]
        return None if named == policy else f"the username names policy '{named[:60]}', the token '{policy}'"

    def attach(self, connection: AmqpConnection, link: Link, address: str) -> LinkHandler:
        if address == CBS:
            return CbsRequests(self.hub, connection) if link.is_receiver else CbsReplies(connection, link)
        if address == DEVICEBOUND and link.is_receiver:
            require_service_connect(self.hub, connection)
            return CloudMessageSends(self.hub, connection)
        if address == FEEDBACK and link.is_sender:
            require_service_connect(self.hub, connection)
            return FeedbackDeliveries(self.hub, connection, link)
        handler = self.event_hubs.attach(connection, link, address)
        if handler is not None:
            return handler
        direction = "send to" if link.is_receiver else "receive from"
        raise Refused("amqp:not-found", f"the hub has no node to {direction} at '{address[:200]}' (the "
                      f"emulator serves {DEVICEBOUND}, {FEEDBACK}, messages/events and the Event Hubs-"
                      f"compatible {self.event_hubs.name}/ConsumerGroups/{{group}}/Partitions/{{n}})")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, (bytes, memoryview, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    raise Refused("amqp:decode-error", "the message body must be binary data or a string")


class CloudMessageSends(InboundNode):
    """`/messages/devicebound`: each message names its device in `to` and is queued for it."""

    def __init__(self, hub: Hub, connection: AmqpConnection):
        self._hub = hub
        self._connection = connection

    def on_message(self, message: Message) -> Outcome:
        require_service_connect(self._hub, self._connection)  # the token may have expired since attach
        match = _DEVICE_TO.match(message.address or "")
        if match is None:
            raise amqp_condition(ArgumentInvalid(f"'to' must be /devices/{{deviceId}}/messages/devicebound, "
                                                 f"not '{(message.address or '')[:200]}'"))
        device_id = urllib.parse.unquote(match["id"])
        properties = {str(k): _text(v) or "" for k, v in (message.properties or {}).items()}
        ack = properties.pop("iothub-ack", "none")
        expiry: float | None = message.expiry_time or None
        if expiry is None and message.ttl:
            expiry = self._hub.now() + message.ttl
        try:
            queued = self._hub.send_cloud_message(
                device_id, _body_bytes(message.body), message_id=_text(message.id), expiry_time=expiry,
                properties=properties, correlation_id=_text(message.correlation_id),
                user_id=_text(message.user_id), content_type=_text(message.content_type),
                content_encoding=_text(message.content_encoding), ack=ack)
        except HubError as e:
            log.info("%s: cloud-to-device message for %s refused: %s", self._connection.peer, device_id[:128],
                     e.message)
            raise amqp_condition(e) from None
        log.info("cloud-to-device message %s queued for %s", queued.message_id, device_id)
        return Outcome.accepted()


class FeedbackDeliveries:
    """`/messages/servicebound/feedback`: batches of feedback records, gone once the service accepts
    them; released, modified or unanswered (link closed) batches are offered again."""

    def __init__(self, hub: Hub, connection: AmqpConnection, link: Link):
        self._hub = hub
        self._connection = connection
        self._link = link
        self._batches: dict[Delivery, str] = {}
        self._presettled = link.remote_snd_settle_mode == Link.SND_SETTLED
        self._stop_listening = hub.c2d.on_feedback(self._feedback_available)

    def _feedback_available(self) -> None:
        self.on_credit()
        self._connection.process()
        self._connection.wake()

    def on_message(self, message: Message) -> Outcome:
        raise Refused("amqp:not-allowed", "feedback is sent by the hub")

    def on_credit(self) -> None:
        c2d = self._hub.c2d
        while self._link.credit > 0 and (batch := c2d.take_feedback()) is not None:
            body = json.dumps(batch.records, separators=(",", ":")).encode("utf-8")
            # inferred: the JSON goes in a data section (binary), as IoT Hub sends it
            message = Message(body=body, inferred=True, id=str(uuid.uuid4()),
                              content_type=FEEDBACK_CONTENT_TYPE, user_id=self._hub.host_name.encode("utf-8"))
            delivery = self._connection.send(self._link, message, settled=self._presettled)
            if self._presettled:
                c2d.complete_feedback(batch.batch_id)
            else:
                self._batches[delivery] = batch.batch_id

    def on_settled(self, delivery: Delivery) -> None:
        batch_id = self._batches.pop(delivery, None)
        if batch_id is not None:
            if delivery.remote_state in (Delivery.ACCEPTED, Delivery.REJECTED):
                self._hub.c2d.complete_feedback(batch_id)  # a rejected batch is dead-lettered, as on IoT Hub
            else:
                self._hub.c2d.release_feedback(batch_id)
        delivery.settle()

    def on_closed(self) -> None:
        self._stop_listening()
        for batch_id in self._batches.values():
            self._hub.c2d.release_feedback(batch_id)
        self._batches.clear()
