"""The telemetry log on disk: device-to-cloud messages by (partition, sequence number), in the hub's
SQLite file beside the records.

Appends come in batches (one transaction each: the messages of one read from a device's socket), and a
batch is committed before the hub acknowledges any of its messages. Each partition's next sequence
number and offset are kept with the batch, so numbering continues after a restart even when retention
has dropped every message (a consumer's checkpoint stays valid). Retention is applied here too: the
log says which sequence number is now the oldest kept, and older rows go in the same transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS telemetry (partition INTEGER NOT NULL, sequence_number INTEGER NOT NULL, "
    "byte_offset INTEGER NOT NULL, enqueued_time REAL NOT NULL, device_id TEXT NOT NULL, body BLOB NOT NULL, "
    "fields TEXT NOT NULL, PRIMARY KEY (partition, sequence_number)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS telemetry_partitions (partition INTEGER PRIMARY KEY, "
    "next_sequence_number INTEGER NOT NULL, next_offset INTEGER NOT NULL)",
)
_FIELDS = json.JSONEncoder(separators=(",", ":"))  # one encoder for the hot path (json.dumps builds one per call)


@dataclass(frozen=True)
class StoredMessage:
    """One message as kept on disk; `fields` holds the rest (properties, stamps) as the log decides."""

    partition: int
    sequence_number: int
    offset: int
    enqueued_time: float
    device_id: str
    body: bytes
    fields: dict[str, Any]


@dataclass(frozen=True)
class PartitionMark:
    """Where a partition's numbering stands, and the oldest sequence number it keeps."""

    partition: int
    next_sequence_number: int
    next_offset: int
    begin_sequence_number: int


class TelemetryJournal:
    """Appends and loads the telemetry log through the store's connection (and its lock)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock):
        self._db = db
        self._lock = lock
        with lock:
            for statement in SCHEMA:
                db.execute(statement)

    def append(self, messages: Iterable[StoredMessage], marks: Iterable[PartitionMark]) -> None:
        """One transaction: the new messages, each touched partition's numbering, and the rows that
        retention dropped (older than its begin sequence number). All are kept, or none."""
        rows = [(m.partition, m.sequence_number, m.offset, m.enqueued_time, m.device_id, m.body,
                 _FIELDS.encode(m.fields)) for m in messages]
        marks = list(marks)
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO telemetry VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            self._write_marks(marks)

    def trim(self, marks: Iterable[PartitionMark]) -> None:
        """Drop what retention dropped (e.g. after a restart with a smaller bound), and keep the numbering."""
        with self._transaction():
            self._write_marks(list(marks))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _write_marks(self, marks: list[PartitionMark]) -> None:
        self._db.executemany("INSERT INTO telemetry_partitions VALUES (?, ?, ?) ON CONFLICT (partition) DO UPDATE "
                             "SET next_sequence_number = excluded.next_sequence_number, "
                             "next_offset = excluded.next_offset",
                             [(m.partition, m.next_sequence_number, m.next_offset) for m in marks])
        self._db.executemany("DELETE FROM telemetry WHERE partition = ? AND sequence_number < ?",
                             [(m.partition, m.begin_sequence_number) for m in marks])

    def load(self) -> tuple[list[StoredMessage], dict[int, tuple[int, int]]]:
        """Every kept message, by partition then sequence number, and each partition's
        (next sequence number, next offset)."""
        with self._lock:
            rows = self._db.execute("SELECT partition, sequence_number, byte_offset, enqueued_time, device_id, "
                                    "body, fields FROM telemetry ORDER BY partition, sequence_number").fetchall()
            numbering = self._db.execute("SELECT partition, next_sequence_number, next_offset "
                                         "FROM telemetry_partitions").fetchall()
        messages = [StoredMessage(p, s, o, t, d, bytes(b), json.loads(f)) for p, s, o, t, d, b, f in rows]
        return messages, {p: (s, o) for p, s, o in numbering}
