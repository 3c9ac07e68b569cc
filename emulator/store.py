"""Persistence for the hub model: SQLite (stdlib) in the data directory, or in memory for tests.

The port is deliberately small: records (JSON documents) by kind and key. The model decides what a
record holds; the store only keeps it. Writes are committed one by one, so a crash loses nothing
that was acknowledged to a client. The telemetry log has its own table (store_telemetry.py), kept only
when the store is on disk: an in-memory hub keeps nothing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, Protocol

from .store_telemetry import TelemetryJournal
from .jsontext import compact_json

try:
    import fcntl
except ImportError:  # Windows: no advisory lock; SQLite's own locking still protects the file
    fcntl = None  # type: ignore[assignment]

DATABASE_FILE = "hub.sqlite3"
LOCK_FILE = "hub.lock"
SCHEMA_VERSION = 1


DEVICES = "device"
TWINS = "twin"
ENROLLMENTS = "enrollment"
REGISTRATIONS = "registration"  # DPS registrations: which devices DPS created (and may re-key)
JOBS = "job"
JOB_DEVICES = "job_device"  # one job's row for one device, keyed "{jobId}/{deviceId}"
JOB_SELECTIONS = "job_selection"  # ids of devices a job selected, in order, keyed "{jobId}/{first deviceId}"
SESSIONS = "mqtt_session"  # persistent (clean_session=0) MQTT sessions of devices: their subscriptions
C2D_MESSAGES = "c2d"  # cloud-to-device messages waiting for their device
C2D_FEEDBACK = "c2d-feedback"  # delivery feedback waiting for a service to take it


class StoreError(RuntimeError):
    """The data directory cannot be used (unreadable, locked, from a newer version)."""


class Store(Protocol):
    def load(self, kind: str) -> list[dict[str, Any]]: ...
    def put(self, kind: str, key: str, record: dict[str, Any]) -> None: ...
    def put_many(self, kind: str, records: Iterable[tuple[str, dict[str, Any]]]) -> None: ...
    def delete(self, kind: str, key: str) -> None: ...
    def telemetry_journal(self) -> TelemetryJournal | None: ...
    def close(self) -> None: ...


class SqliteStore:
    """Records in one table keyed by (kind, key). Use `SqliteStore.in_memory()` for tests."""

    def __init__(self, path: Path | str, lock: IO[str] | None = None):
        self.path = str(path)
        self._dir_lock = lock
        try:
            # The hub runs on one event-loop thread, but may be built on another: allow that, and
            # serialise with a lock anyway.
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL" if self.path != ":memory:" else "PRAGMA journal_mode=MEMORY")
            # WAL + NORMAL: a commit reaches the OS before it returns (a killed emulator loses nothing it
            # acknowledged) without an fsync per write, which stalled the event loop for 10-100 ms each
            # on a busy disk. Only a power cut or OS crash can lose the last commits.
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} was written by a newer emulator (schema {version})")
            self._db.execute("CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, key TEXT NOT NULL, "
                             "body TEXT NOT NULL, PRIMARY KEY (kind, key))")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the store {self.path}: {e}") from None
        self._lock = threading.Lock()

    @classmethod
    def in_directory(cls, data_dir: Path) -> SqliteStore:
        """The store of a data directory, which one emulator at a time may use."""
        data_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock_directory(data_dir)
        try:
            return cls(data_dir / DATABASE_FILE, lock)
        except BaseException:
            if lock:
                lock.close()
            raise

    @classmethod
    def in_memory(cls) -> SqliteStore:
        return cls(":memory:")

    def load(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM records WHERE kind = ? ORDER BY rowid", (kind,)).fetchall()
        return [json.loads(body) for (body,) in rows]

    def put(self, kind: str, key: str, record: dict[str, Any]) -> None:
        body = compact_json(record)
        with self._lock:
            self._db.execute("INSERT INTO records (kind, key, body) VALUES (?, ?, ?) "
                             "ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body", (kind, key, body))

    def put_many(self, kind: str, records: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """(key, record) pairs in one transaction: all are kept, or none (bulk registration)."""
        rows = [(kind, key, compact_json(record)) for key, record in records]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT INTO records (kind, key, body) VALUES (?, ?, ?) "
                                     "ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body", rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def delete(self, kind: str, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))

    def telemetry_journal(self) -> TelemetryJournal | None:
        """Where the telemetry log is kept, or None in memory (the log then lives in the process only)."""
        return None if self.path == ":memory:" else TelemetryJournal(self._db, self._lock)

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._dir_lock:
                self._dir_lock.close()  # releases the directory lock
                self._dir_lock = None


def _lock_directory(data_dir: Path) -> IO[str] | None:
    """Two emulators on one data directory would overwrite each other's state: refuse the second."""
    if fcntl is None:
        return None
    handle = open(data_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip()
        handle.close()
        raise StoreError(f"{data_dir} is in use by another running emulator{f' (pid {owner})' if owner else ''}; "
                         "stop it, or use --data-dir or --in-memory") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
