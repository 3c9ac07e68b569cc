"""Cloud-to-device messages: one queue per device, delivery, completion, expiry and feedback.

IoT Hub's rules: at most 50 messages per device (enqueued or awaiting the device's acknowledgement),
64 KB per message, a time to live of at most 2 days (1 hour when the sender sets no expiry), at most
10 delivery attempts. A message is handed out for delivery, then completed (MQTT: PUBACK), rejected
(AMQP/HTTPS devices) or released back to the queue (the connection was lost before an
acknowledgement). Senders that ask for it (`iothub-ack`) get feedback records: Success on completion,
Expired, DeliveryCountExceeded, Rejected. Feedback waits in one hub-wide queue until a service takes
a batch and accepts it. Messages and feedback persist through the store, so a restart loses neither.
"""

from __future__ import annotations

import base64
import heapq
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .. import store as store_kinds
from ..store import Store
from .clock import Clock, iso_timestamp
from .errors import ArgumentInvalid, HubError, MessageTooLarge

MAX_QUEUE_DEPTH = 50
MAX_MESSAGE_BYTES = 64 * 1024
DEFAULT_TTL_SECONDS = 3600.0
MAX_TTL_SECONDS = 2 * 24 * 3600.0
MAX_DELIVERY_COUNT = 10
FEEDBACK_TTL_SECONDS = 3600.0  # IoT Hub keeps feedback for an hour by default
FEEDBACK_BATCH = 64  # records per feedback message

Ack = Literal["none", "positive", "negative", "full"]
ACK_VALUES: tuple[str, ...] = ("none", "positive", "negative", "full")
FeedbackStatus = Literal["Success", "Expired", "DeliveryCountExceeded", "Rejected"]
_DESCRIPTIONS: dict[str, str] = {
    "Success": "Success", "Expired": "Message expired",
    "DeliveryCountExceeded": "Message delivery count exceeded", "Rejected": "Message rejected",
}
_WANTS_FEEDBACK: dict[str, tuple[str, ...]] = {
    "none": (), "positive": ("Success",),
    "negative": ("Expired", "DeliveryCountExceeded", "Rejected"),
    "full": ("Success", "Expired", "DeliveryCountExceeded", "Rejected"),
}


class DeviceMaximumQueueDepthExceeded(HubError):
    error_code, error_name = 403004, "DeviceMaximumQueueDepthExceeded"


@dataclass
class CloudMessage:
    """One cloud-to-device message as the hub keeps it."""

    device_id: str
    body: bytes
    message_id: str
    expiry_time: float  # epoch seconds
    enqueued_time: float
    sequence: int  # hub-wide enqueue order
    properties: dict[str, str] = field(default_factory=dict)  # application properties
    correlation_id: str | None = None
    user_id: str | None = None
    content_type: str | None = None
    content_encoding: str | None = None
    ack: str = "none"
    device_generation_id: str = ""
    lock_token: str = field(default_factory=lambda: str(uuid.uuid4()))
    delivery_count: int = 0
    in_flight: bool = False  # handed to the device, not yet acknowledged

    @property
    def to(self) -> str:
        return f"/devices/{self.device_id}/messages/devicebound"

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["body"] = base64.b64encode(self.body).decode("ascii")
        del record["in_flight"]  # nothing is in flight on a hub that just started
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> CloudMessage:
        fields = dict(record)
        fields["body"] = base64.b64decode(fields["body"])
        return cls(**fields)


@dataclass
class FeedbackBatch:
    batch_id: str
    records: list[dict[str, Any]]


def message_size(body: bytes, properties: dict[str, str], system: Iterable[str | None]) -> int:
    """What counts against the 64 KB limit: the body and every property name and value."""
    size = len(body)
    size += sum(len(k.encode("utf-8")) + len(str(v).encode("utf-8")) for k, v in properties.items())
    size += sum(len(value.encode("utf-8")) for value in system if value)
    return size


class CloudToDeviceQueues:
    """Every device's queue and the feedback queue. Not thread-safe (the hub's one thread)."""

    def __init__(self, clock: Clock, store: Store):
        self._clock = clock
        self._store = store
        self._queues: dict[str, OrderedDict[str, CloudMessage]] = {}  # device -> lock token -> message
        self._expiries: list[tuple[float, int, str, str]] = []  # (expiry, sequence, device, lock token)
        self._sequence = 0
        self._feedback: OrderedDict[str, dict[str, Any]] = OrderedDict()  # record id -> record
        self._feedback_in_flight: dict[str, list[str]] = {}  # batch id -> record ids
        self._feedback_listeners: list[Callable[[], None]] = []
        self._load()

    def _load(self) -> None:
        for record in self._store.load(store_kinds.C2D_MESSAGES):
            message = CloudMessage.from_record(record)
            self._queue(message.device_id)[message.lock_token] = message
            heapq.heappush(self._expiries, (message.expiry_time, message.sequence, message.device_id,
                                            message.lock_token))
            self._sequence = max(self._sequence, message.sequence)
        for queue in self._queues.values():  # the store keeps insertion order; the queue is FIFO
            for token in sorted(queue, key=lambda t: queue[t].sequence):
                queue.move_to_end(token)
        for record in self._store.load(store_kinds.C2D_FEEDBACK):
            self._feedback[record["id"]] = record

    def _queue(self, device_id: str) -> OrderedDict[str, CloudMessage]:
        return self._queues.setdefault(device_id, OrderedDict())

    def _save(self, message: CloudMessage) -> None:
        self._store.put(store_kinds.C2D_MESSAGES, message.lock_token, message.to_record())

    # ---- sending ---------------------------------------------------------------------------------
    def enqueue(self, device_id: str, body: bytes, *, device_generation_id: str = "",
                message_id: str | None = None, expiry_time: float | None = None,
                properties: dict[str, str] | None = None, correlation_id: str | None = None,
                user_id: str | None = None, content_type: str | None = None,
                content_encoding: str | None = None, ack: str = "none") -> CloudMessage:
        """Queue a message for a device (which the caller has checked exists). Raises MessageTooLarge,
        DeviceMaximumQueueDepthExceeded or ArgumentInvalid; nothing is queued when it raises."""
        properties = {str(k): str(v) for k, v in (properties or {}).items()}
        if ack not in ACK_VALUES:
            raise ArgumentInvalid(f"iothub-ack must be one of {', '.join(ACK_VALUES)}, not '{ack[:40]}'")
        size = message_size(body, properties, (message_id, correlation_id, user_id, content_type,
                                               content_encoding))
        if size > MAX_MESSAGE_BYTES:
            raise MessageTooLarge(f"The message is {size} bytes; cloud-to-device messages are limited to "
                                  f"{MAX_MESSAGE_BYTES} bytes (body and properties)")
        queue = self._queue(device_id)
        if len(queue) >= MAX_QUEUE_DEPTH:
            raise DeviceMaximumQueueDepthExceeded(
                f"Device {device_id} already has {MAX_QUEUE_DEPTH} cloud-to-device messages waiting; "
                "wait for it to receive them, or purge its queue")
        now = self._clock()
        if expiry_time is None:
            expiry_time = now + DEFAULT_TTL_SECONDS
        elif expiry_time - now > MAX_TTL_SECONDS:
            expiry_time = now + MAX_TTL_SECONDS  # IoT Hub caps a message's life at the hub's maximum TTL
        self._sequence += 1
        message = CloudMessage(device_id, body, message_id or str(uuid.uuid4()), expiry_time, now,
                               self._sequence, properties, correlation_id, user_id, content_type,
                               content_encoding, ack, device_generation_id)
        self._save(message)
        queue[message.lock_token] = message
        heapq.heappush(self._expiries, (expiry_time, message.sequence, device_id, message.lock_token))
        return message

    def depth(self, device_id: str) -> int:
        return len(self._queues.get(device_id, ()))

    def purge(self, device_id: str) -> int:
        """Drop every message of a device (no feedback, as on IoT Hub); returns how many."""
        queue = self._queues.pop(device_id, None) or OrderedDict()
        for token in queue:
            self._store.delete(store_kinds.C2D_MESSAGES, token)
        return len(queue)

    # ---- delivery --------------------------------------------------------------------------------
    def take_for_delivery(self, device_id: str, limit: int | None = None) -> list[CloudMessage]:
        """Messages not yet handed out, oldest first, now marked in flight (delivery count + 1)."""
        self.expire()
        taken: list[CloudMessage] = []
        for message in self._queues.get(device_id, {}).values():
            if limit is not None and len(taken) >= limit:
                break
            if message.in_flight:
                continue
            message.in_flight = True
            message.delivery_count += 1
            self._save(message)
            taken.append(message)
        return taken

    def in_flight(self, device_id: str) -> list[CloudMessage]:
        return [m for m in self._queues.get(device_id, {}).values() if m.in_flight]

    def complete(self, device_id: str, lock_token: str) -> bool:
        """The device acknowledged the message: remove it; Success feedback if asked. False when the
        message is gone already (expired, purged, completed)."""
        return self._finish(device_id, lock_token, "Success")

    def reject(self, device_id: str, lock_token: str) -> bool:
        """The device refused the message: dead-lettered, Rejected feedback if asked."""
        return self._finish(device_id, lock_token, "Rejected")

    def _finish(self, device_id: str, lock_token: str, status: FeedbackStatus) -> bool:
        message = self._remove(device_id, lock_token)
        if message is None:
            return False
        self._feedback_for(message, status)
        return True

    def release(self, device_id: str, lock_token: str) -> bool:
        """Back to the queue for another attempt, unless it has had MAX_DELIVERY_COUNT already."""
        message = self._queues.get(device_id, {}).get(lock_token)
        if message is None or not message.in_flight:
            return False
        if message.delivery_count >= MAX_DELIVERY_COUNT:
            self._remove(device_id, lock_token)
            self._feedback_for(message, "DeliveryCountExceeded")
            return True
        message.in_flight = False
        return True

    def release_all(self, device_id: str) -> None:
        for message in self.in_flight(device_id):
            self.release(device_id, message.lock_token)

    def _remove(self, device_id: str, lock_token: str) -> CloudMessage | None:
        queue = self._queues.get(device_id)
        message = queue.pop(lock_token, None) if queue else None
        if message is None:
            return None
        if not queue:
            del self._queues[device_id]
        self._store.delete(store_kinds.C2D_MESSAGES, lock_token)
        return message

    # ---- time ------------------------------------------------------------------------------------
    def expire(self) -> int:
        """Drop messages whose expiry has passed (Expired feedback if asked) and stale feedback;
        returns how many messages expired. Costs what is due, not the number of queues."""
        now = self._clock()
        expired = 0
        heap = self._expiries
        while heap and heap[0][0] <= now:
            _, _, device_id, token = heapq.heappop(heap)
            message = self._remove(device_id, token)  # None: completed or purged since
            if message is not None:
                expired += 1
                self._feedback_for(message, "Expired")
        in_flight = {rid for ids in self._feedback_in_flight.values() for rid in ids}
        while self._feedback:
            record_id, record = next(iter(self._feedback.items()))
            if record["expiresAt"] > now or record_id in in_flight:
                break
            del self._feedback[record_id]
            self._store.delete(store_kinds.C2D_FEEDBACK, record_id)
        return expired

    # ---- feedback --------------------------------------------------------------------------------
    def on_feedback(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener()` whenever feedback becomes available; returns a function that stops it."""
        self._feedback_listeners.append(listener)
        return lambda: self._feedback_listeners.remove(listener) if listener in self._feedback_listeners else None

    def _feedback_for(self, message: CloudMessage, status: FeedbackStatus) -> None:
        if status not in _WANTS_FEEDBACK.get(message.ack, ()):
            return
        now = self._clock()
        record_id = str(uuid.uuid4())
        record = {"id": record_id, "expiresAt": now + FEEDBACK_TTL_SECONDS, "body": {
            "originalMessageId": message.message_id, "deviceId": message.device_id,
            "statusCode": status, "description": _DESCRIPTIONS[status],
            "enqueuedTimeUtc": iso_timestamp(now), "deviceGenerationId": message.device_generation_id}}
        self._feedback[record_id] = record
        self._store.put(store_kinds.C2D_FEEDBACK, record_id, record)
        for listener in list(self._feedback_listeners):
            listener()

    def take_feedback(self, limit: int = FEEDBACK_BATCH) -> FeedbackBatch | None:
        """A batch of feedback records not in flight (oldest first), or None when there is none."""
        in_flight = {rid for ids in self._feedback_in_flight.values() for rid in ids}
        ids = [rid for rid in self._feedback if rid not in in_flight][:limit]
        if not ids:
            return None
        batch = FeedbackBatch(str(uuid.uuid4()), [self._feedback[rid]["body"] for rid in ids])
        self._feedback_in_flight[batch.batch_id] = ids
        return batch

    def complete_feedback(self, batch_id: str) -> None:
        """The service accepted the batch: its records are gone."""
        for record_id in self._feedback_in_flight.pop(batch_id, ()):
            if self._feedback.pop(record_id, None) is not None:
                self._store.delete(store_kinds.C2D_FEEDBACK, record_id)

    def release_feedback(self, batch_id: str) -> None:
        """The batch was not accepted (released, link closed): its records are offered again."""
        if self._feedback_in_flight.pop(batch_id, None) is not None:
            for listener in list(self._feedback_listeners):
                listener()

    def feedback_waiting(self) -> int:
        return len(self._feedback)
