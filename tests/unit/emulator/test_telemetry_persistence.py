"""The telemetry log on disk: what the hub acknowledged survives a kill, numbering continues, retention
bounds the file too, and a PUBACK leaves only once its message is committed."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from emulator.hub import FakeClock, Hub
from emulator.hub.telemetry import RETENTION_SECONDS, partition_of
from emulator.mqtt.device_front import DeviceFront
from emulator.store import DATABASE_FILE, SqliteStore
from mqttcodec import Puback, Publish, Subscribe, encode

from .test_device_front import KEY, FakeClient, hub_connect

NOW = 1_700_000_000


def open_hub(data_dir: Path, clock: FakeClock, **options) -> Hub:
    """A hub on the data directory's database without its directory lock: the previous hub is never
    closed, as after a SIGKILL (SQLite shows a new connection everything committed)."""
    data_dir.mkdir(exist_ok=True)
    hub = Hub("localhost", store=SqliteStore(data_dir / DATABASE_FILE), clock=clock, **options)
    if "d1" not in hub.registry:
        hub.create_device("d1", primary_key=KEY)
        hub.create_device("d2")
    return hub


def rows_on_disk(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / DATABASE_FILE) as db:
        return db.execute("SELECT count(*) FROM telemetry").fetchone()[0]


def test_messages_survive_a_kill_with_their_numbers_and_fields(tmp_path):
    clock = FakeClock(NOW)
    first = open_hub(tmp_path, clock)
    sent = [first.receive_telemetry("d1", f"m{n}".encode(), {"n": str(n)}, {"$.mid": f"id{n}", "$.ct": "text/plain"})
            for n in range(5)]
    sent.append(first.receive_telemetry("d2", b"\x00\xff binary"))

    second = open_hub(tmp_path, clock)  # `first` is never closed
    assert second.telemetry.messages("d1") == sent[:5] and second.telemetry.messages("d2") == sent[5:]
    assert second.telemetry.messages("d1")[3].system_properties == {"$.mid": "id3", "$.ct": "text/plain"}


def test_sequence_numbers_and_offsets_continue_after_a_restart(tmp_path):
    clock = FakeClock(NOW)
    first = open_hub(tmp_path, clock)
    before = [first.receive_telemetry("d1", b"x" * n) for n in range(3)]
    second = open_hub(tmp_path, clock)
    after = second.receive_telemetry("d1", b"after")
    assert [m.sequence_number for m in before] + [after.sequence_number] == [0, 1, 2, 3]
    assert after.offset == before[-1].offset + before[-1].size


def test_numbering_continues_when_retention_dropped_every_message(tmp_path):
    clock = FakeClock(NOW)
    first = open_hub(tmp_path, clock)
    last = [first.receive_telemetry("d1", b"old") for _ in range(4)][-1]
    clock.advance(RETENTION_SECONDS + 1)

    second = open_hub(tmp_path, clock)
    partition = second.telemetry.partitions[partition_of("d1")]
    assert partition.is_empty and rows_on_disk(tmp_path) == 0  # expired in memory and on disk
    assert partition.begin_sequence_number == last.sequence_number + 1
    fresh = second.receive_telemetry("d1", b"new")
    assert (fresh.sequence_number, fresh.offset) == (last.sequence_number + 1, last.offset + last.size)


def test_housekeeping_expires_old_messages_on_disk_without_new_ones(tmp_path):
    clock = FakeClock(NOW)
    hub = open_hub(tmp_path, clock)
    hub.receive_telemetry("d1", b"old")
    clock.advance(RETENTION_SECONDS / 2)
    hub.receive_telemetry("d2", b"newer")
    clock.advance(RETENTION_SECONDS / 2 + 1)
    hub.expire_due()
    assert [m.body for m in hub.telemetry.messages()] == [b"newer"] and rows_on_disk(tmp_path) == 1


def test_retention_by_count_bounds_the_file(tmp_path):
    hub = open_hub(tmp_path, FakeClock(NOW), telemetry_capacity=3)
    for n in range(10):
        hub.receive_telemetry("d1", str(n).encode())
    assert rows_on_disk(tmp_path) == 3
    reopened = open_hub(tmp_path, FakeClock(NOW), telemetry_capacity=3)
    assert [m.body for m in reopened.telemetry.messages()] == [b"7", b"8", b"9"]


def test_a_smaller_bound_at_restart_trims_the_file(tmp_path):
    first = open_hub(tmp_path, FakeClock(NOW))
    for n in range(6):
        first.receive_telemetry("d1", str(n).encode())
    second = open_hub(tmp_path, FakeClock(NOW), telemetry_capacity=2)
    assert [m.sequence_number for m in second.telemetry.messages()] == [4, 5]
    assert rows_on_disk(tmp_path) == 2


def test_in_memory_keeps_nothing_on_disk():
    store = SqliteStore.in_memory()
    assert store.telemetry_journal() is None
    hub = Hub("localhost", store=store)
    hub.create_device("d1")
    hub.receive_telemetry("d1", b"kept in the process only")
    assert len(hub.telemetry.messages()) == 1


def test_uncommitted_messages_are_not_on_disk_nor_shown_to_listeners_until_commit(tmp_path):
    hub = open_hub(tmp_path, FakeClock(NOW))
    heard: list[bytes] = []
    hub.telemetry.add_listener(lambda message: heard.append(message.body))
    woken: list[int] = []
    hub.telemetry.partitions[partition_of("d1")].on_append(lambda: woken.append(1))
    for n in range(3):
        hub.receive_telemetry("d1", str(n).encode(), commit=False)
    assert rows_on_disk(tmp_path) == 0 and heard == [] and woken == []
    hub.commit_telemetry()
    assert rows_on_disk(tmp_path) == 3 and heard == [b"0", b"1", b"2"] and woken == [1]


# ---- the device front: PUBACK only for committed messages -----------------------------------------

class DiskCheckingClient(FakeClient):
    """Records, at each flush that sends PUBACKs, how many messages were committed to disk."""

    def __init__(self, front, data_dir: Path):
        super().__init__(front)
        self.data_dir = data_dir
        self.committed_at_puback: list[tuple[int, int]] = []

    def flush(self):
        before = len(self.received)
        super().flush()
        pubacks = sum(isinstance(p, Puback) for p in self.received[before:])
        if pubacks:
            self.committed_at_puback.append((pubacks, rows_on_disk(self.data_dir)))


def publish(n: int) -> Publish:
    return Publish(f"devices/d1/messages/events/n={n}", f"m{n}".encode(), 1, n + 1)


def test_pubacks_of_one_read_leave_after_its_messages_are_committed(tmp_path):
    hub = open_hub(tmp_path, FakeClock(NOW))
    front = DeviceFront(hub)
    client = DiskCheckingClient(front, tmp_path)
    client.send(hub_connect())
    # Three PUBLISHes in one read, as a device with several in flight sends them.
    client.front.handle_events(client, client.connection.receive_data(b"".join(encode(publish(n)) for n in range(3))))
    assert client.committed_at_puback == [(3, 3)]


def test_a_store_failure_sends_no_puback_and_closes_the_connection(tmp_path, monkeypatch):
    hub = open_hub(tmp_path, FakeClock(NOW))
    front = DeviceFront(hub)
    client = DiskCheckingClient(front, tmp_path)
    client.send(hub_connect())

    def disk_full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(hub.telemetry._journal, "append", disk_full)
    client.send(publish(0))
    assert not any(isinstance(p, Puback) for p in client.received)
    assert client.closed


def deliver(client: FakeClient, *packets) -> None:
    """One read from the socket, as the server hands it over (no flush of our own)."""
    client.front.handle_events(client, client.connection.receive_data(b"".join(encode(p) for p in packets)))


async def test_connections_read_in_one_loop_turn_share_one_commit_before_their_pubacks(tmp_path, monkeypatch):
    hub = open_hub(tmp_path, FakeClock(NOW))
    hub.create_device("d3", primary_key=KEY)
    front = DeviceFront(hub)
    first, second = DiskCheckingClient(front, tmp_path), DiskCheckingClient(front, tmp_path)
    first.send(hub_connect())
    second.send(hub_connect("d3"))
    transactions = []
    journal_append = hub.telemetry._journal.append
    monkeypatch.setattr(hub.telemetry._journal, "append",
                        lambda *args: (transactions.append(1), journal_append(*args)))

    deliver(first, publish(0), publish(1))
    deliver(second, Publish("devices/d3/messages/events/", b"x", 1, 7))
    assert first.committed_at_puback == second.committed_at_puback == []  # held until the commit
    assert rows_on_disk(tmp_path) == 0 and hub.telemetry.messages() == []  # nor readable before it

    await asyncio.sleep(0)  # the group commit runs in the next turn of the loop
    assert transactions == [1]
    assert first.committed_at_puback == [(2, 3)] and second.committed_at_puback == [(1, 3)]


async def test_a_push_to_a_waiting_connection_commits_first(tmp_path):
    hub = open_hub(tmp_path, FakeClock(NOW))
    front = DeviceFront(hub)
    client = DiskCheckingClient(front, tmp_path)
    client.send(hub_connect(), Subscribe(1, (("$iothub/twin/PATCH/properties/desired/#", 1),)))
    deliver(client, publish(0))
    hub.patch_desired("d1", {"colour": "red"})  # the service's PATCH flushes the device's connection
    assert client.committed_at_puback == [(1, 1)]
    assert any(isinstance(p, Publish) and "desired" in p.topic for p in client.received)
