"""Load: 1,000 devices on raw MQTT/TLS connections (our codec, one asyncio loop) against an emulator
process, for a bounded time: concurrent direct-method invocations over HTTPS answered by the devices,
and reported-property patches from every device. Every call is accounted for: zero lost, zero
duplicated, zero mismatched, every twin's reported $version exact; the emulator's memory does not grow
while the load holds steady.

Figures are printed (run with -s to see them) and written to <tmp>/load-figures.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import pytest

from emulator.hub import Hub
from mqttcodec import Connack, Connect, PacketReader, Puback, Publish, Suback, Subscribe, encode
from emulator.store import SqliteStore
from hubsettings import wellknown
from tests.e2e.conftest import EmulatorProcess, free_loopback_address

from .conftest import new_key
from .support import API, SDK_SUBSCRIPTIONS, device_token, service_token

pytestmark = pytest.mark.heavy

DEVICES = int(os.environ.get("RELIABILITY_LOAD_DEVICES", "1000"))
DURATION_S = float(os.environ.get("RELIABILITY_LOAD_SECONDS", "20"))
METHOD_WORKERS = 24  # concurrent invocations in flight
REPORT_INTERVAL_S = 4.0  # each device patches its reported properties about this often
CONNECT_CONCURRENCY = 50
WAIT = 60.0
MEMORY_GROWTH_LIMIT_MB = 40  # between the first and the last third of the steady load


@dataclass
class LoadDevice(asyncio.Protocol):
    """One device: answers every method request with its payload, patches reported properties."""

    device_id: str
    transport: asyncio.Transport | None = None
    reader: PacketReader = field(default_factory=PacketReader)
    connack: asyncio.Future | None = None
    suback: asyncio.Future | None = None
    lost: bool = False
    method_requests: Counter = field(default_factory=Counter)  # seq -> times received
    report_replies: Counter = field(default_factory=Counter)  # rid -> replies received
    report_status: dict = field(default_factory=dict)  # rid -> status
    reports_sent: list = field(default_factory=list)  # rids, in order
    next_id: int = 0

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.lost = True
        for pending in (self.connack, self.suback):
            if pending and not pending.done():
                pending.set_result(-1)

    def data_received(self, data):
        for packet in self.reader.feed(data):
            if isinstance(packet, Connack):
                self.connack.set_result(packet.return_code)
            elif isinstance(packet, Suback):
                self.suback.set_result(packet.return_codes)
            elif isinstance(packet, Publish):
                if packet.qos == 1:
                    self.transport.write(encode(Puback(packet.packet_id)))
                self._on_publish(packet)

    def _on_publish(self, packet: Publish) -> None:
        topic = packet.topic
        if topic.startswith("$iothub/methods/POST/"):
            rid = topic.split("$rid=")[1]
            seq = json.loads(packet.payload)["seq"]
            self.method_requests[seq] += 1
            self.publish(f"$iothub/methods/res/200/?$rid={rid}", packet.payload)
        elif topic.startswith("$iothub/twin/res/"):
            rid = topic.split("$rid=")[1].split("&")[0]
            self.report_replies[rid] += 1
            self.report_status[rid] = int(topic.split("/")[3])

    def publish(self, topic: str, payload: bytes) -> None:
        self.next_id = self.next_id % 65535 + 1
        self.transport.write(encode(Publish(topic, payload, 1, self.next_id)))

    def report(self) -> None:
        rid = f"{self.device_id}-{len(self.reports_sent)}"
        self.reports_sent.append(rid)
        self.publish(f"$iothub/twin/PATCH/properties/reported/?$rid={rid}",
                     json.dumps({"counter": len(self.reports_sent), "load": {"rid": rid}}).encode())


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def loaded_hub(tmp_path):
    """An emulator process whose store already holds DEVICES devices with known keys."""
    emulator = EmulatorProcess(free_loopback_address(), tmp_path / "data")
    emulator.data_dir.mkdir()
    seed = Hub(emulator.host_name, store=SqliteStore.in_directory(emulator.data_dir))
    keys = {}
    for index in range(DEVICES):
        device_id = f"load-{index:05d}"
        keys[device_id] = new_key()
        seed.create_device(device_id, primary_key=keys[device_id])
    seed.close()
    emulator.start()
    yield emulator, keys
    emulator.stop()
    log = emulator.log.read_text()
    assert "Traceback" not in log, log[-5000:]


async def connect_all(emulator: EmulatorProcess, keys: dict[str, str]) -> dict[str, LoadDevice]:
    context = ssl.create_default_context(cadata=emulator.ca_pem)
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(CONNECT_CONCURRENCY)
    devices: dict[str, LoadDevice] = {}

    async def connect(device_id: str, key: str) -> None:
        async with slots:
            _, device = await asyncio.wait_for(loop.create_connection(
                lambda: LoadDevice(device_id), emulator.address, wellknown.MQTT_PORT, ssl=context,
                server_hostname=emulator.host_name), WAIT)
            device.connack = loop.create_future()
            token = device_token(emulator.host_name, device_id, key)
            device.transport.write(encode(Connect(device_id, f"{emulator.host_name}/{device_id}/?api-version=2019-10-01",
                                                  token.encode(), keepalive=300, clean_session=False)))
            assert await asyncio.wait_for(device.connack, WAIT) == 0, device_id
            device.suback = loop.create_future()  # methods are delivered only to subscribers
            device.transport.write(encode(Subscribe(1, tuple((f, 1) for f in SDK_SUBSCRIPTIONS))))
            assert await asyncio.wait_for(device.suback, WAIT) == (1,) * len(SDK_SUBSCRIPTIONS), device_id
            devices[device_id] = device

    await asyncio.gather(*(connect(d, k) for d, k in keys.items()))
    return devices


async def test_a_thousand_devices_under_methods_and_reported_patches_lose_nothing(loaded_hub, tmp_path):
    emulator, keys = loaded_hub
    started = time.monotonic()
    devices = await connect_all(emulator, keys)
    connect_seconds = time.monotonic() - started
    device_ids = list(devices)
    ssl_context = ssl.create_default_context(cadata=emulator.ca_pem)
    base = f"https://{emulator.host_name}:{emulator.rest_port}"
    invoked: dict[int, str] = {}  # seq -> device id
    answers: Counter = Counter()  # seq -> 200 answers with the right payload
    failures: list[str] = []
    rss: list[tuple[float, float]] = []
    stop_at = time.monotonic() + DURATION_S
    rng = random.Random(8)

    async def invoke(session: aiohttp.ClientSession, worker: int) -> None:
        seq = worker
        while time.monotonic() < stop_at:
            device_id = rng.choice(device_ids)
            invoked[seq] = device_id
            body = {"methodName": "echo", "payload": {"seq": seq}, "responseTimeoutInSeconds": 60}
            headers = {"Authorization": service_token(emulator.host_name, emulator.rest_port)}
            async with session.post(f"{base}/twins/{device_id}/methods?{API}", json=body, headers=headers) as response:
                result = await response.json()
                if response.status == 200 and result == {"status": 200, "payload": {"seq": seq}}:
                    answers[seq] += 1
                else:
                    failures.append(f"{device_id} seq {seq}: {response.status} {result}")
            seq += METHOD_WORKERS

    async def report_loop(device: LoadDevice) -> None:
        await asyncio.sleep(rng.uniform(0, REPORT_INTERVAL_S))
        while time.monotonic() < stop_at:
            device.report()
            await asyncio.sleep(REPORT_INTERVAL_S)

    async def sample_memory() -> None:  # the emulator's resident memory, once a second
        while time.monotonic() < stop_at:
            await asyncio.sleep(1)
            rss.append((time.monotonic(), rss_mb(emulator.process.pid)))

    load_started = time.monotonic()
    connector = aiohttp.TCPConnector(ssl=ssl_context, limit=METHOD_WORKERS)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=WAIT)) as session:
        await asyncio.gather(*(invoke(session, w) for w in range(METHOD_WORKERS)),
                             *(report_loop(d) for d in devices.values()), sample_memory())
    load_seconds = time.monotonic() - load_started

    # Let the last reported-patch replies arrive, then account for everything.
    def all_replied() -> bool:
        return all(len(d.report_replies) == len(d.reports_sent) for d in devices.values())
    deadline = time.monotonic() + WAIT
    while not all_replied() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)

    lost_methods = [seq for seq in invoked if answers[seq] == 0]
    duplicated_answers = [seq for seq, n in answers.items() if n > 1]
    device_side_duplicates = sum(n - 1 for d in devices.values() for n in d.method_requests.values() if n > 1)
    misrouted = [seq for d in devices.values() for seq in d.method_requests if invoked.get(seq) != d.device_id]
    reports = sum(len(d.reports_sent) for d in devices.values())
    lost_reports = sum(1 for d in devices.values() for rid in d.reports_sent if d.report_replies[rid] == 0)
    duplicated_replies = sum(1 for d in devices.values() for n in d.report_replies.values() if n > 1)
    refused_reports = sum(1 for d in devices.values() for status in d.report_status.values() if status != 204)
    disconnected = [d.device_id for d in devices.values() if d.lost]

    # Every reported patch landed exactly once: $version = 1 + patches, counter = the last one.
    wrong_twins = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context, limit=8)) as session:
        sample = device_ids if DEVICES <= 1000 else rng.sample(device_ids, 1000)
        async def check(device_id: str) -> None:
            headers = {"Authorization": service_token(emulator.host_name, emulator.rest_port)}
            async with session.get(f"{base}/twins/{device_id}?{API}", headers=headers) as response:
                reported = (await response.json())["properties"]["reported"]
            sent = len(devices[device_id].reports_sent)
            if reported["$version"] != 1 + sent or reported.get("counter", 0) != sent:
                wrong_twins.append((device_id, sent, reported["$version"], reported.get("counter")))
        await asyncio.gather(*(check(d) for d in sample))

    steady = [mb for t, mb in rss]
    third = max(1, len(steady) // 3)
    early, late = sum(steady[:third]) / third, sum(steady[-third:]) / third
    figures = {
        "devices": len(devices), "connect_seconds": round(connect_seconds, 1), "load_seconds": round(load_seconds, 1),
        "method_calls": len(invoked), "method_calls_per_second": round(len(invoked) / load_seconds),
        "reported_patches": reports, "lost_method_answers": len(lost_methods),
        "duplicated_method_answers": len(duplicated_answers), "duplicated_method_requests": device_side_duplicates,
        "misrouted_method_requests": len(misrouted), "failed_method_calls": len(failures),
        "lost_reported_replies": lost_reports, "duplicated_reported_replies": duplicated_replies,
        "refused_reported_patches": refused_reports, "wrong_twin_versions": len(wrong_twins),
        "dropped_connections": len(disconnected),
        "emulator_rss_mb_early": round(early, 1), "emulator_rss_mb_late": round(late, 1),
    }
    print("\nLOAD FIGURES " + json.dumps(figures))
    (tmp_path / "load-figures.json").write_text(json.dumps(figures, indent=2))
    for device in devices.values():
        device.transport.close()

    assert len(devices) == DEVICES
    assert failures == [], failures[:5]
    assert lost_methods == [] and duplicated_answers == [] and device_side_duplicates == 0 and misrouted == []
    assert lost_reports == 0 and duplicated_replies == 0 and refused_reports == 0, figures
    assert wrong_twins == [], wrong_twins[:5]
    assert disconnected == [], disconnected[:5]
    assert len(invoked) >= DEVICES // 10, figures  # the load was real, not a trickle
    assert late - early < MEMORY_GROWTH_LIMIT_MB, figures
