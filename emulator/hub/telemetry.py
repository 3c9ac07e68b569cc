"""Device-to-cloud messages as IoT Hub keeps them: its built-in Event Hubs-compatible endpoint.

A partitioned log (4 partitions, IoT Hub's default): a device's messages always land in the same
partition (a hash of its id), each stamped with the partition's next sequence number, a byte offset and
the time it was enqueued. Retention is bounded twice: by age (one day, IoT Hub's default) and by size
per partition (the newest `capacity` messages and `MAX_PARTITION_BYTES`, about 30,000 small messages), so
memory stays bounded (about 64 MB for 4 partitions); the log lives as long as the process (it is not
persisted). Readers hold a position (a sequence number)
and pull; the log never waits for them, so a stalled reader holds nothing back.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from .clock import iso_timestamp

DEFAULT_CAPACITY = 100_000  # messages kept per partition (the byte bound usually binds first)
PARTITION_COUNT = 4
RETENTION_SECONDS = 24 * 3600
MAX_PARTITION_BYTES = 16 * 1024 * 1024  # by `size`, which counts what a message costs in memory
MESSAGE_OVERHEAD_BYTES = 512  # a retained message's Python objects beyond its body and properties
DEFAULT_CONSUMER_GROUP = "$Default"
MAX_CONSUMER_GROUPS = 20  # IoT Hub's limit per hub (standard tier)
# Event Hubs' rule: letters, digits, periods, hyphens and underscores, starting and ending with a letter
# or digit, at most 50 characters.
_GROUP_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,48}[A-Za-z0-9])?$")
# What IoT Hub stamps as iothub-connection-auth-method for a device that authenticated with a SAS token.
SAS_AUTH_METHOD = '{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}'


@dataclass(frozen=True)
class TelemetryMessage:
    device_id: str
    body: bytes
    properties: dict[str, str] = field(default_factory=dict)  # application properties
    system_properties: dict[str, str] = field(default_factory=dict)  # $.mid, $.ct, $.ce, ...
    enqueued_time: float = 0.0
    auth_method: str = SAS_AUTH_METHOD
    generation_id: str = ""
    model_id: str = ""  # the IoT Plug and Play model the device announced (stamped as dt-dataschema)
    # Where the log put it (set when appended):
    partition: int = 0
    sequence_number: int = -1
    offset: int = -1

    @cached_property
    def size(self) -> int:
        """What the message weighs in the log: its body and properties (for offsets and the byte bound)."""
        return (len(self.body) + sum(len(k) + len(v) for k, v in self.properties.items())
                + sum(len(k) + len(v) for k, v in self.system_properties.items()) + MESSAGE_OVERHEAD_BYTES)

    def to_json(self) -> dict[str, Any]:
        try:
            body: Any = self.body.decode("utf-8")
        except UnicodeDecodeError:
            body = {"base64": base64.b64encode(self.body).decode("ascii")}
        return {"deviceId": self.device_id, "body": body, "properties": dict(self.properties),
                "systemProperties": dict(self.system_properties),
                "enqueuedTime": iso_timestamp(self.enqueued_time)}


def partition_of(device_id: str, count: int = PARTITION_COUNT) -> int:
    """The partition a device's messages go to: stable across runs (not Python's salted hash())."""
    return int.from_bytes(hashlib.sha256(device_id.encode("utf-8")).digest()[:4], "big") % count


class Partition:
    """One partition: the retained messages, oldest first, with contiguous sequence numbers."""

    def __init__(self, index: int, capacity: int, max_bytes: int = MAX_PARTITION_BYTES):
        self.index = index
        self._capacity = max(1, capacity)
        self._max_bytes = max_bytes
        self._messages: deque[TelemetryMessage] = deque()
        self._bytes = 0
        self.next_sequence_number = 0
        self.next_offset = 0
        self.last_enqueued: TelemetryMessage | None = None
        self._listeners: list[Callable[[], None]] = []

    def append(self, message: TelemetryMessage) -> TelemetryMessage:
        stored = replace(message, partition=self.index, sequence_number=self.next_sequence_number,
                         offset=self.next_offset)
        self.next_sequence_number += 1
        self.next_offset += stored.size
        self._messages.append(stored)
        self._bytes += stored.size
        self.last_enqueued = stored
        while len(self._messages) > self._capacity or (self._bytes > self._max_bytes and len(self._messages) > 1):
            self._drop_oldest()
        return stored

    def expire(self, before: float) -> None:
        """Drop the messages enqueued before `before` (retention by age)."""
        while self._messages and self._messages[0].enqueued_time < before:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        self._bytes -= self._messages.popleft().size

    @property
    def begin_sequence_number(self) -> int:
        """The oldest retained message's sequence number (the next one's when the partition is empty)."""
        return self._messages[0].sequence_number if self._messages else self.next_sequence_number

    @property
    def is_empty(self) -> bool:
        return not self._messages

    def messages(self) -> list[TelemetryMessage]:
        return list(self._messages)

    def read(self, sequence_number: int, limit: int) -> list[TelemetryMessage]:
        """Up to `limit` messages from `sequence_number` on (from the oldest retained if it was dropped)."""
        if not self._messages or limit <= 0:
            return []
        start = max(0, sequence_number - self._messages[0].sequence_number)
        end = min(len(self._messages), start + limit)
        return [self._messages[i] for i in range(start, end)]

    # Start positions, as the next sequence number to deliver:
    def after_offset(self, offset: int, inclusive: bool) -> int:
        index = (bisect.bisect_left if inclusive else bisect.bisect_right)(self._messages, offset,
                                                                           key=lambda m: m.offset)
        return self._sequence_at(index)

    def after_time(self, epoch_seconds: float, inclusive: bool) -> int:
        index = (bisect.bisect_left if inclusive else bisect.bisect_right)(self._messages, epoch_seconds,
                                                                           key=lambda m: m.enqueued_time)
        return self._sequence_at(index)

    def _sequence_at(self, index: int) -> int:
        return self._messages[index].sequence_number if index < len(self._messages) else self.next_sequence_number

    # Readers waiting for more:
    def on_append(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after each append; returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def notify(self) -> None:
        for listener in list(self._listeners):
            listener()


class ConsumerGroupError(ValueError):
    pass


def consumer_group_name_problem(name: str) -> str | None:
    """Why `name` cannot name a consumer group, or None."""
    if _GROUP_NAME.match(name):
        return None
    return (f"invalid consumer group name '{name[:60]}': use 1-50 letters, digits, periods, hyphens and "
            "underscores, starting and ending with a letter or digit")


class TelemetryLog:
    """The hub's Event Hubs-compatible endpoint: partitions and consumer groups."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, partition_count: int = PARTITION_COUNT,
                 retention_seconds: float = RETENTION_SECONDS):
        self.partitions = [Partition(i, capacity) for i in range(partition_count)]
        self.retention_seconds = retention_seconds
        self.created_at = 0.0
        self._consumer_groups: dict[str, str] = {DEFAULT_CONSUMER_GROUP.lower(): DEFAULT_CONSUMER_GROUP}
        self._listeners: list[Callable[[TelemetryMessage], None]] = []
        self.received_total = 0

    def add(self, message: TelemetryMessage) -> TelemetryMessage:
        partition = self.partitions[partition_of(message.device_id, len(self.partitions))]
        partition.expire(message.enqueued_time - self.retention_seconds)
        stored = partition.append(message)
        self.received_total += 1
        for listener in list(self._listeners):
            listener(stored)
        partition.notify()
        return stored

    def partition(self, partition_id: str) -> Partition | None:
        """The partition named "0".."3", or None."""
        if partition_id.isdigit() and int(partition_id) < len(self.partitions):
            return self.partitions[int(partition_id)]
        return None

    def messages(self, device_id: str | None = None) -> list[TelemetryMessage]:
        """The retained messages (of one device, or all), in the order they were enqueued."""
        if device_id is not None:
            chosen = [self.partitions[partition_of(device_id, len(self.partitions))]]
        else:
            chosen = self.partitions
        found = [m for p in chosen for m in p.messages() if device_id is None or m.device_id == device_id]
        found.sort(key=lambda m: m.enqueued_time)  # stable: within a partition, log order is kept
        return found

    # ---- consumer groups -------------------------------------------------------------------------
    @property
    def consumer_groups(self) -> list[str]:
        return list(self._consumer_groups.values())

    def consumer_group(self, name: str) -> str | None:
        """The group's name as created (names are case-insensitive), or None."""
        return self._consumer_groups.get(name.lower())

    def create_consumer_group(self, name: str) -> str:
        """Create a consumer group (no-op when it exists); ConsumerGroupError for a bad name or too many."""
        if (problem := consumer_group_name_problem(name)) is not None:
            raise ConsumerGroupError(problem)
        if name.lower() in self._consumer_groups:
            return self._consumer_groups[name.lower()]
        if len(self._consumer_groups) >= MAX_CONSUMER_GROUPS:
            raise ConsumerGroupError(f"a hub has at most {MAX_CONSUMER_GROUPS} consumer groups")
        self._consumer_groups[name.lower()] = name
        return name

    # ---- live listeners (tests, the emulator's own tools) ----------------------------------------
    def add_listener(self, listener: Callable[[TelemetryMessage], None]) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[TelemetryMessage], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

