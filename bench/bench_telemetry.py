"""Telemetry throughput: devices publishing (MQTT/TLS, QoS 1) to one consumer, beside mosquitto's
publish-to-subscriber rate in the same run.

- hub: `DEVICES` raw MQTT devices publish `PER_DEVICE` messages each to the emulator (bench.hub_host);
  one azure-eventhub EventHubConsumerClient reads all 4 partitions of the Event Hubs-compatible endpoint
  from "@latest". Rate = messages / (first publish -> last message read by the consumer); also the rate
  at which the hub acknowledged them (PUBACK), to tell the hub's share from the consumer's. The consumer
  is configured as `iothub-service monitor` configures it (its short socket timeout: the sync client's
  partition loop otherwise blocks 0.2 s on each quiet partition) and takes each batch as soon as it is
  read (no max_wait_time, which would hold a batch back until it is full or the wait is over). Then the
  latency: `LATENCY_SAMPLES` messages at `LATENCY_RATE` msg/s, publish -> the consumer's callback.
- mosquitto: the same devices publish QoS 1 to a mosquitto broker on TLS (a certificate from the emulator's
  own generator) and one MQTT subscriber on `bench/telemetry/#` reads them. Skipped with a note when
  mosquitto is not installed.

Runs on its own (`python -m bench.bench_telemetry [--quick]`) or from the runner through `run(ctx)`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from emulator.amqp.event_hubs import event_hub_connection_string
from emulator.certs import ensure_certificates
from mqttcodec import Connect
from hubsettings import build_token, wellknown

from .context import BenchContext, Budget, Sizes
from .device_behaviour import device_id
from .hub_host import BENCH_DEVICE_KEY
from .hubs import running_hub
from .mosquitto_ref import TLS_PORT, broker_config, find_mosquitto
from .mosquitto_ref import _wait_listening as wait_listening
from .mqtt_client import MqttClient, client_ssl_context, open_client
from .processes import Child, free_loopback_address
from .report import Figure, Results
from .stats import summarize

DEVICES, PER_DEVICE = 20, 500
QUICK_DEVICES, QUICK_PER_DEVICE = 5, 100
WINDOW = 50  # QoS 1 publishes a device keeps in flight
PAYLOAD = b'{"temperature":21.5,"humidity":40}'
MOSQUITTO_TOPIC = "bench/telemetry/"
LATENCY_SAMPLES, LATENCY_RATE = 100, 20.0
LATENCY_PREFIX = "latency-"


async def _devices(host: str, port: int, ca_file: str, count: int, credentials: bool) -> list[MqttClient]:
    context = client_ssl_context(ca_file)
    clients = []
    for index in range(count):
        name = device_id("dev-", index)
        connect = Connect(name, keepalive=1200)
        if credentials:
            connect = Connect(name, keepalive=1200, username=f"{host}/{name}/?api-version=2021-04-12",
                              password=build_token(f"{host}/devices/{name}", BENCH_DEVICE_KEY).encode())
        clients.append(await open_client(host, port, connect, ssl_context=context))
    return clients


async def _publish_all(clients: list[MqttClient], per_device: int, topic_of) -> None:
    async def one(client: MqttClient) -> None:
        in_flight: list[asyncio.Future[object]] = []
        for _ in range(per_device):
            waiter = client.publish(topic_of(client.client_id), PAYLOAD, qos=1)
            assert waiter is not None
            in_flight.append(waiter)
            if len(in_flight) >= WINDOW:
                await in_flight.pop(0)
        await asyncio.gather(*in_flight)

    await asyncio.gather(*(one(client) for client in clients))


class _Counter:
    """Counts messages on any thread; `reached` is set at `target`."""

    def __init__(self, target: int):
        self.target = target
        self.count = 0
        self.reached = threading.Event()
        self.finished_at = 0.0
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.count += n
            if self.count >= self.target and not self.reached.is_set():
                self.finished_at = time.perf_counter()
                self.reached.set()


def _hub_rate(ctx: BenchContext, devices: int, per_device: int) -> dict[str, Any]:
    from azure.eventhub import EventHubConsumerClient

    from service.event_hub import SOCKET_TIMEOUT_S

    total = devices * per_device
    with running_hub(ctx, "hub-telemetry", devices, amqp=True) as hub:
        key = wellknown.POLICIES[wellknown.OWNER_POLICY][0]
        connection_string = event_hub_connection_string(hub.host_name, 5671, wellknown.OWNER_POLICY, key)
        client = EventHubConsumerClient.from_connection_string(connection_string, consumer_group="$Default",
                                                               connection_verify=hub.ca_file, prefetch=1000,
                                                               socket_timeout=SOCKET_TIMEOUT_S)
        warm, counter = _Counter(devices), _Counter(total)
        warming = threading.Event()
        warming.set()

        sent: dict[str, float] = {}
        arrived: dict[str, float] = {}

        def on_event_batch(context: Any, events: list) -> None:
            if counter.reached.is_set():  # the latency phase
                now = time.perf_counter()
                arrived.update((body, now) for body in (e.body_as_str() for e in events) if body in sent)
            (warm if warming.is_set() else counter).add(len(events))

        reader = threading.Thread(target=client.receive_batch, daemon=True, kwargs={
            "on_event_batch": on_event_batch, "max_batch_size": 1000, "max_wait_time": None,
            "starting_position": "@latest"})
        reader.start()
        topic = "devices/{}/messages/events/"
        acknowledged: list[float] = []  # seconds until the hub PUBACKed every message

        async def publish() -> float:
            clients = await _devices(hub.host_name, hub.mqtt_port, hub.ca_file, devices, credentials=True)
            try:
                # Warm up until every partition's receiver is attached: one message per device arrives.
                deadline = time.monotonic() + 60
                while not warm.reached.is_set() and time.monotonic() < deadline:
                    await _publish_all(clients, 1, topic.format)
                    await asyncio.sleep(2)
                if not warm.reached.is_set():
                    raise RuntimeError("the consumer did not attach to every partition within 60 s")
                await asyncio.sleep(1)
                warming.clear()
                started = time.perf_counter()
                await _publish_all(clients, per_device, topic.format)
                acknowledged.append(time.perf_counter() - started)
                if await asyncio.to_thread(counter.reached.wait, ctx.budget.cap(120)):
                    await _publish_spaced(clients, sent, topic.format)
                return started
            finally:
                for device in clients:
                    device.close()

        started = asyncio.run(publish())
        done = counter.reached.wait(ctx.budget.cap(120))
        client.close()
        reader.join(15)
        if not done:
            raise RuntimeError(f"the consumer read {counter.count} of {total} messages within the time cap")
        seconds = counter.finished_at - started
        latencies = [arrived[body] - at for body, at in sent.items() if body in arrived]
        return {"messages": total, "devices": devices, "seconds": seconds, "per_second": total / seconds,
                "acknowledged_per_second": total / acknowledged[0],
                "latency": {"sent": len(sent), **asdict(summarize(latencies))} if latencies else None}


async def _publish_spaced(clients: list[MqttClient], sent: dict[str, float], topic_of) -> None:
    """`LATENCY_SAMPLES` messages at `LATENCY_RATE` msg/s, round the devices; then a moment for the last."""
    for index in range(LATENCY_SAMPLES):
        client = clients[index % len(clients)]
        body = f"{LATENCY_PREFIX}{index}"
        sent[body] = time.perf_counter()
        client.publish(topic_of(client.client_id), body.encode(), qos=1)
        await asyncio.sleep(1 / LATENCY_RATE)
    await asyncio.sleep(2)


def _mosquitto_rate(ctx: BenchContext, devices: int, per_device: int) -> dict[str, Any] | None:
    binary = find_mosquitto()
    if binary is None:
        ctx.results.note("mosquitto not installed: the telemetry reference rate is skipped")
        return None
    total = devices * per_device
    address = free_loopback_address((TLS_PORT, 1883), ctx.used_addresses)
    ctx.used_addresses.add(address)
    with tempfile.TemporaryDirectory(prefix="bench-mosquitto-telemetry-") as temp:
        paths = ensure_certificates(Path(temp) / "certs", [address])
        config = Path(temp) / "mosquitto.conf"
        config.write_text(broker_config(address, paths.server_cert, paths.server_key, getpass.getuser()))
        with Child("mosquitto-telemetry", [binary, "-c", str(config)], ctx.log_dir, reads_stdin=False) as broker:
            wait_listening(address, TLS_PORT, broker)
            counter = _Counter(total)

            async def run() -> float:
                ca = str(paths.ca_cert)
                subscriber = await open_client(address, TLS_PORT, Connect("telemetry-consumer", keepalive=1200),
                                               ssl_context=client_ssl_context(ca),
                                               on_publish=lambda client, packet: counter.add())
                await subscriber.subscribe(MOSQUITTO_TOPIC + "#", qos=1)
                clients = await _devices(address, TLS_PORT, ca, devices, credentials=False)
                try:
                    started = time.perf_counter()
                    await _publish_all(clients, per_device, lambda name: MOSQUITTO_TOPIC + name)
                    while not counter.reached.is_set():
                        await asyncio.sleep(0.01)
                    return started
                finally:
                    for client in (*clients, subscriber):
                        client.close()

            started = asyncio.run(asyncio.wait_for(run(), ctx.budget.cap(120)))
    seconds = counter.finished_at - started
    return {"messages": total, "devices": devices, "seconds": seconds, "per_second": total / seconds}


def run(ctx: BenchContext) -> dict[str, Any]:
    quick = ctx.sizes.fanout_devices == Sizes.quick().fanout_devices
    devices, per_device = (QUICK_DEVICES, QUICK_PER_DEVICE) if quick else (DEVICES, PER_DEVICE)
    ctx.budget.require(30, "telemetry throughput")
    ctx.progress(f"  telemetry: {devices} devices x {per_device} messages -> one Event Hubs consumer")
    result: dict[str, Any] = {"hub": _hub_rate(ctx, devices, per_device)}
    ctx.progress("  telemetry: the same through mosquitto to one MQTT subscriber")
    result["mosquitto"] = _mosquitto_rate(ctx, devices, per_device)
    _record(ctx, result)
    return result


SECTION = "8 telemetry"


def _record(ctx: BenchContext, result: dict[str, Any]) -> None:
    hub, mosquitto = result["hub"], result["mosquitto"] or {}
    what = f"{hub['devices']} raw devices x {hub['messages'] // hub['devices']} messages"
    ctx.results.add(Figure(SECTION, f"telemetry, devices -> one consumer ({what})", hub["per_second"], "msg/s",
                           reference=mosquitto.get("per_second"), vs="pub-sub",
                           note="emulator as shipped (SQLite); consumer: azure-eventhub EventHubConsumerClient"))
    ctx.results.add(Figure(SECTION, "  of which the hub acknowledged (PUBACK, durable)",
                           hub["acknowledged_per_second"], "msg/s"))
    latency = hub["latency"]
    if latency is None:
        ctx.results.note("telemetry latency: none of the spaced messages reached the consumer")
    else:
        ctx.results.add(Figure(SECTION, f"telemetry latency, publish -> consumer p50 ({latency['count']} of "
                               f"{latency['sent']} at {LATENCY_RATE:g} msg/s)", latency["p50_ms"], "ms"))
    ctx.results.details["telemetry"] = result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_DEVICES} devices x {QUICK_PER_DEVICE}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as logs:
        results = Results(machine={}, mode="quick" if args.quick else "full", started_utc=time.strftime("%FT%TZ"))
        ctx = BenchContext(results=results, budget=Budget(600), sizes=Sizes.quick() if args.quick else Sizes(),
                           log_dir=Path(logs))
        print(json.dumps(run(ctx), indent=2))
        for note in ctx.results.notes:
            print(f"note: {note}")


if __name__ == "__main__":
    main()
