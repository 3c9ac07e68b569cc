"""The hub's built-in Event Hubs-compatible endpoint on the AMQP front: entity path = the hub's name.

- `{hub}/ConsumerGroups/{group}/Partitions/{n}`: a receiver reads one partition of the telemetry log
  from the start position its source filter names (`amqp.annotation.x-opt-offset`,
  `x-opt-sequence-number` or `x-opt-enqueued-time`, with `>` or `>=`; offset "-1" is the earliest
  retained message, "@latest" the next one to arrive).
- `$management`: the READ operations of `com.microsoft:eventhub` and `com.microsoft:partition`
  (partition ids, sequence numbers, last enqueued message) that Event Hubs clients ask first.
- `messages/events/...` on the hub's own endpoint answers `amqp:link:redirect` to the address above,
  which is how the az extension and Microsoft's samples find the Event Hubs-compatible endpoint.

A reader sends only as many messages as the client's link credit allows, and none while the socket's
write buffer is full; it keeps no queue of its own (it holds a position in the log), so a slow or
stalled consumer never holds back devices or others, and costs no memory beyond its buffer.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from proton import Delivery, Link, Message, int32, symbol, timestamp, ulong

from ..hub import Hub, HubError
from ..hub.telemetry import Partition, TelemetryMessage
from .cbs import SERVICE_CONNECT, require_service_connect
from .connection import AmqpConnection, InboundNode, LinkHandler, Outcome, Refused

log = logging.getLogger("emulator.amqp")

MANAGEMENT = "/$management"
IOTHUB_EVENTS = "/messages/events"
SELECTOR_FILTER = "apache.org:selector-filter:string"
SELECTOR_DESCRIPTOR = ulong(0x0000468C00000004)
MESSAGE_SOURCE = "Telemetry"
_SELECTOR = re.compile(
    r"^\s*amqp\.annotation\.x-opt-(?P<kind>offset|sequence-number|enqueued-time)\s*(?P<op>>=|>|=)\s*"
    r"(?P<quote>'?)(?P<value>[^']*)(?P=quote)\s*$", re.IGNORECASE)


def event_hub_name(host_name: str) -> str:
    """The Event Hubs-compatible name (entity path): the hub's name, the first label of its host name."""
    return host_name.split(".", 1)[0] if not host_name.replace(".", "").isdigit() else host_name


# ---- start positions -------------------------------------------------------------------------------
def start_sequence_number(partition: Partition, selector: str | None) -> int:
    """The next sequence number a new reader of `partition` gets, from its selector filter (None: the
    earliest retained message). Raises Refused(amqp:invalid-field) for a filter it cannot use."""
    if selector is None:
        return partition.begin_sequence_number
    match = _SELECTOR.match(selector)
    if match is None:
        raise Refused("amqp:invalid-field", f"unsupported start filter '{selector[:200]}': use "
                      "amqp.annotation.x-opt-offset, x-opt-sequence-number or x-opt-enqueued-time with > or >=")
    kind, op, value = match["kind"].lower(), match["op"], match["value"].strip()
    inclusive = op in (">=", "=")
    if kind == "offset" and value == "-1":
        return partition.begin_sequence_number
    if kind == "offset" and value.lower() == "@latest":
        return partition.next_sequence_number
    try:
        number = int(value)
    except ValueError:
        raise Refused("amqp:invalid-field", f"the {kind} in the start filter must be a whole number, "
                      f"not '{value[:60]}'") from None
    if kind == "offset":
        return partition.after_offset(number, inclusive)
    if kind == "sequence-number":
        return max(number if inclusive else number + 1, partition.begin_sequence_number)
    return partition.after_time(number / 1000, inclusive)  # enqueued time: epoch milliseconds


def selector_of(link: Link) -> str | None:
    """The selector string of a receiver's source filter, or None when it has none."""
    data = link.remote_source.filter
    if data is None:
        return None
    data.rewind()
    if not data.next():
        return None
    filters = data.get_object()
    if not isinstance(filters, dict):
        return None
    for key, value in filters.items():
        if str(key) == SELECTOR_FILTER or getattr(value, "descriptor", None) == SELECTOR_DESCRIPTOR:
            described = getattr(value, "value", value)
            return described.decode("utf-8", "replace") if isinstance(described, bytes) else str(described)
    return None


# ---- the messages readers get ----------------------------------------------------------------------
def event_message(event: TelemetryMessage) -> Message:
    """A telemetry message as IoT Hub's Event Hubs-compatible endpoint delivers it."""
    system = event.system_properties
    message = Message(body=event.body, inferred=True)  # bytes: a data section, as the device sent them
    message.id = system.get("$.mid")
    message.correlation_id = system.get("$.cid")
    message.content_type = system.get("$.ct")
    message.content_encoding = system.get("$.ce")
    if "$.uid" in system:
        message.user_id = system["$.uid"].encode("utf-8")
    message.properties = dict(event.properties) or None
    enqueued = timestamp(int(event.enqueued_time * 1000))
    message.annotations = {
        symbol("iothub-connection-device-id"): event.device_id,
        symbol("iothub-connection-auth-method"): event.auth_method,
        symbol("iothub-connection-auth-generation-id"): event.generation_id,
        symbol("iothub-enqueuedtime"): enqueued,
        symbol("iothub-message-source"): MESSAGE_SOURCE,
        symbol("x-opt-sequence-number"): event.sequence_number,
        symbol("x-opt-offset"): str(event.offset),
        symbol("x-opt-enqueued-time"): enqueued,
    }
    stamped_if_set = {"dt-dataschema": event.model_id, "dt-subject": system.get("$.sub"),
                      "iothub-creation-time-utc": system.get("$.ctime")}
    message.annotations.update({symbol(k): v for k, v in stamped_if_set.items() if v})
    return message


class PartitionReader:
    """Our sender link to one consumer of one partition: sends from its position while it has credit."""

    def __init__(self, connection: AmqpConnection, link: Link, partition: Partition, position: int):
        self._connection = connection
        self._link = link
        self._partition = partition
        self.position = position
        self._presettled = link.remote_snd_settle_mode == Link.SND_SETTLED
        self._stop_listening = partition.on_append(self._appended)

    def _appended(self) -> None:
        if self._link.credit > 0 and not self._connection.paused:
            self.on_credit()
            self._connection.wake_soon()

    def on_message(self, message: Message) -> Any:
        raise Refused("amqp:not-allowed", "a partition is read, not written, on the Event Hubs-compatible endpoint")

    def on_credit(self) -> None:
        credit = self._link.credit
        if credit <= 0 or self._connection.paused:
            return
        for event in self._partition.read(self.position, credit):
            self._connection.send(self._link, event_message(event), settled=self._presettled)
            self.position = event.sequence_number + 1

    def on_settled(self, delivery: Delivery) -> None:
        delivery.settle()  # the position moved on when it was sent; the log keeps the message either way

    def on_closed(self) -> None:
        self._stop_listening()


# ---- $management -----------------------------------------------------------------------------------
@dataclass
class _ReplyRoutes:
    """A connection's `$management` reply links by address, and the replies waiting for credit."""

    links: dict[str, Link] = field(default_factory=dict)
    pending: list[tuple[str, Message]] = field(default_factory=list)

    def flush(self, connection: AmqpConnection) -> None:
        waiting = []
        for address, reply in self.pending:
            link = self.links.get(address) or next(iter(self.links.values()), None)
            if link is not None and link.credit > 0:
                connection.send(link, reply, settled=True)
            else:
                waiting.append((address, reply))
        self.pending = waiting


def _routes(connection: AmqpConnection) -> _ReplyRoutes:
    routes = getattr(connection, "management_routes", None)
    if routes is None:
        routes = _ReplyRoutes()
        connection.management_routes = routes  # type: ignore[attr-defined]
    return routes


class ManagementRequests(InboundNode):
    """The client's sender link to `$management`: READ requests about the event hub and its partitions."""

    def __init__(self, hub: Hub, connection: AmqpConnection):
        self._hub = hub
        self._connection = connection

    def on_message(self, message: Message) -> Outcome:
        properties = {str(k): v for k, v in (message.properties or {}).items()}
        status, description, body = self._answer(properties)
        reply = Message(correlation_id=message.id, address=message.reply_to, body=body,
                        properties={"status-code": int32(status), "status-description": description})
        routes = _routes(self._connection)
        routes.pending.append((str(message.reply_to or ""), reply))
        self._connection.defer(lambda: routes.flush(self._connection))
        return Outcome.accepted()

    def _answer(self, properties: dict[str, Any]) -> tuple[int, str, dict[str, Any] | None]:
        token = properties.get("security_token")
        try:
            if isinstance(token, str):
                self._hub.authenticate_service(token, SERVICE_CONNECT)
            else:
                require_service_connect(self._hub, self._connection)
        except HubError as e:
            return 401, e.message, None
        except Refused as e:
            return 401, e.description, None
        telemetry = self._hub.telemetry
        name = event_hub_name(self._hub.host_name)
        if str(properties.get("operation")) != "READ":
            return 400, f"unsupported operation '{str(properties.get('operation'))[:40]}'; only READ", None
        if str(properties.get("name", "")).lower() != name.lower():
            return 404, f"the event hub '{str(properties.get('name'))[:100]}' does not exist; this hub's is '{name}'", None
        kind = str(properties.get("type"))
        if kind == "com.microsoft:eventhub":
            return 200, "OK", {
                "name": name, "type": kind, "created_at": timestamp(int(telemetry.created_at * 1000)),
                "partition_count": int32(len(telemetry.partitions)),
                "partition_ids": [str(p.index) for p in telemetry.partitions]}
        if kind == "com.microsoft:partition":
            partition = telemetry.partition(str(properties.get("partition", "")))
            if partition is None:
                return 404, (f"partition '{str(properties.get('partition'))[:20]}' does not exist; the partitions "
                             f"are 0 to {len(telemetry.partitions) - 1}"), None
            last = partition.last_enqueued
            return 200, "OK", {
                "name": name, "type": kind, "partition": str(partition.index),
                "begin_sequence_number": partition.begin_sequence_number,
                "last_enqueued_sequence_number": last.sequence_number if last else -1,
                "last_enqueued_offset": str(last.offset) if last else "-1",
                "last_enqueued_time_utc": timestamp(int(last.enqueued_time * 1000) if last else 0),
                "is_partition_empty": partition.is_empty}
        return 400, f"unsupported type '{kind[:60]}'; com.microsoft:eventhub or com.microsoft:partition", None


class ManagementReplies:
    """The client's receiver link from `$management` (our sender): the answers, by reply address."""

    def __init__(self, connection: AmqpConnection, link: Link):
        self._connection = connection
        self._address = link.remote_target.address or ""
        self._link = link
        _routes(connection).links[self._address] = link

    def on_message(self, message: Message) -> Any:
        raise Refused("amqp:not-allowed", "$management replies are sent by the hub")

    def on_credit(self) -> None:
        _routes(self._connection).flush(self._connection)

    def on_settled(self, delivery: Delivery) -> None:
        delivery.settle()

    def on_closed(self) -> None:
        links = _routes(self._connection).links
        if links.get(self._address) is self._link:
            del links[self._address]


# ---- which link is which ---------------------------------------------------------------------------
_PARTITION = re.compile(r"^/(?P<hub>[^/]+)/consumergroups/(?P<group>[^/]+)/partitions/(?P<partition>[^/]+)/?$")


class EventHubsNodes:
    """The Event Hubs-compatible nodes and the redirect, for ServiceEndpoints.attach."""

    def __init__(self, hub: Hub, port: int):
        self.hub = hub
        self.port = port  # the AMQP listener's port, for the redirect's address

    @property
    def name(self) -> str:
        return event_hub_name(self.hub.host_name)

    def attach(self, connection: AmqpConnection, link: Link, address: str) -> LinkHandler | None:
        """A handler when `address` is one of ours, else None; raises Refused (the redirect, errors)."""
        if address == MANAGEMENT:
            require_service_connect(self.hub, connection)
            return ManagementRequests(self.hub, connection) if link.is_receiver else ManagementReplies(connection, link)
        if address == IOTHUB_EVENTS or address.startswith(IOTHUB_EVENTS + "/"):
            if link.is_receiver:
                return None  # devices send telemetry over MQTT; not a service node
            require_service_connect(self.hub, connection)
            raise self._redirect(link)
        match = _PARTITION.match(address)
        if match is None or urllib.parse.unquote(match["hub"]) != self.name.lower():
            return None
        if link.is_receiver:
            raise Refused("amqp:not-allowed", "the Event Hubs-compatible endpoint is read-only: devices send "
                          "telemetry to the hub")
        require_service_connect(self.hub, connection)
        return self._reader(connection, link, urllib.parse.unquote(match["group"]), match["partition"])

    def _reader(self, connection: AmqpConnection, link: Link, group: str, partition_id: str) -> PartitionReader:
        telemetry = self.hub.telemetry
        if telemetry.consumer_group(group) is None:
            raise Refused("amqp:not-found", f"the consumer group '{group[:60]}' does not exist on event hub "
                          f"'{self.name}' (it has {', '.join(telemetry.consumer_groups)}); create it with "
                          "iothub-emulator --consumer-group NAME")
        partition = telemetry.partition(partition_id)
        if partition is None:
            raise Refused("amqp:not-found", f"partition '{partition_id[:20]}' does not exist on event hub "
                          f"'{self.name}'; the partitions are 0 to {len(telemetry.partitions) - 1}")
        position = start_sequence_number(partition, selector_of(link))
        log.info("%s: reading partition %s of consumer group %s from sequence number %d", connection.peer,
                 partition.index, group, position)
        return PartitionReader(connection, link, partition, position)

    def _redirect(self, link: Link) -> Refused:
        original = link.remote_source.address or ""
        path = urllib.parse.urlsplit(original).path if "://" in original else original
        rest = "/" + path.lstrip("/")[len(IOTHUB_EVENTS) - 1:].lstrip("/")
        host = self.hub.host_name
        address = f"amqps://{host}:{self.port}/{self.name}{rest.rstrip('/') if rest != '/' else ''}"
        return Refused("amqp:link:redirect", f"read telemetry from the Event Hubs-compatible endpoint {address}",
                       info={symbol("hostname"): host, symbol("network-host"): host,
                             symbol("port"): int32(self.port), symbol("address"): address})


def event_hub_connection_string(host_name: str, port: int, policy: str, key: str) -> str:
    """The Event Hubs-compatible connection string of a hub (as the portal shows it); a port other than
    5671 is kept in the Endpoint (Event Hubs clients then need it as their custom endpoint address)."""
    endpoint = host_name if port == 5671 else f"{host_name}:{port}"
    return (f"Endpoint=sb://{endpoint}/;SharedAccessKeyName={policy};SharedAccessKey={key};"
            f"EntityPath={event_hub_name(host_name)}")
