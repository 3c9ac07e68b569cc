"""`python -m bench.fleet`: a process holding many raw-MQTT devices that answer at once: the fleet
engine's lowest layer (device/fleet/mqtt.py) with no DeviceAgent on top, the benchmark's reference
for what `iothub-device --count` costs.

Talks to its parent on stdin/stdout with JSON lines: after connecting it prints
{"event": "connected", ...}; the line `stats` prints {"event": "stats", ...}; `quit` or end of input
closes every connection and exits. Device ids are `{prefix}{index:05d}` for index in [start, start+count).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from device.fleet.topics import device_subscriptions
from mqttcodec import Connect, Publish
from hubsettings import build_token

from .device_behaviour import (DESIRED_PATCH, device_id, hub_reply, reference_reply, reference_request_filters,
                               reported_ack)
from .mqtt_client import MqttClient, client_ssl_context, open_client, shrink_tls_read_buffers

#: No PINGREQs are sent: a keepalive longer than any bench run keeps the hub's sweep honest but idle.
TWIN_ANSWER_OK = "$iothub/twin/res/204/"
KEEPALIVE_SECONDS = 1200
TOKEN_TTL_SECONDS = 3 * 3600
#: Devices per fleet process: two processes share 10,000 devices (one core each on a 2-core machine).
DEVICES_PER_PROCESS = 5000


def fleet_parts(count: int, per_process: int = DEVICES_PER_PROCESS) -> list[tuple[int, int]]:
    """Split device indexes [0, count) into (start, count) parts of at most `per_process`."""
    if count <= 0:
        return []
    parts = -(-count // per_process)
    size = -(-count // parts)
    return [(start, min(size, count - start)) for start in range(0, count, size)]


@dataclass
class Counters:
    methods: int = 0
    patches: int = 0
    reported: int = 0  # reported patches (acknowledgements of desired patches) the hub accepted
    other: int = 0


def _own_rss() -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Fleet:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.counters = Counters()
        self.clients: list[MqttClient] = []
        self._next_rid = 0
        self.ssl_context = client_ssl_context(args.ca) if args.ca else None

    def on_publish(self, client: MqttClient, packet: Publish) -> None:
        if self.args.mode == "hub":
            reply = hub_reply(packet.topic)
            if reply is None:
                if packet.topic.startswith(DESIRED_PATCH):  # acknowledged, as iothub-device does
                    self.counters.patches += 1
                    self._next_rid += 1
                    ack = reported_ack(bytes(packet.payload), str(self._next_rid))
                    if ack is not None:
                        client.publish(ack[0], ack[1], qos=1)
                elif packet.topic.startswith(TWIN_ANSWER_OK):
                    self.counters.reported += 1
                else:
                    self.counters.other += 1
                return
        else:
            reply = reference_reply(packet.topic, client.client_id)
            if reply is None:
                self.counters.other += 1
                return
        self.counters.methods += 1
        client.publish(reply[0], reply[1], qos=1)

    def _connect_packet(self, device: str) -> Connect:
        args = self.args
        if args.mode == "hub":
            token = build_token(f"{args.hub_host_name}/devices/{device}", args.key, ttl=TOKEN_TTL_SECONDS)
            username = f"{args.hub_host_name}/{device}/?api-version=2019-10-01"
            return Connect(device, username=username, password=token.encode(), keepalive=KEEPALIVE_SECONDS,
                           clean_session=False)
        return Connect(device, keepalive=KEEPALIVE_SECONDS, clean_session=True)

    async def _connect_one(self, index: int, slots: asyncio.Semaphore, failures: list[str]) -> None:
        device = device_id(self.args.prefix, index)
        async with slots:
            try:
                client = await open_client(self.args.host, self.args.port, self._connect_packet(device),
                                           ssl_context=self.ssl_context, on_publish=self.on_publish)
                if self.args.mode == "mosquitto":
                    await client.subscribe(reference_request_filters(device), qos=1)
                else:  # as a device does: IoT Hub delivers by subscription
                    await client.subscribe(device_subscriptions(device), qos=1)
            except Exception as e:  # noqa: BLE001 - counted and reported, the others go on
                failures.append(f"{device}: {type(e).__name__}: {e}")
                return
        self.clients.append(client)

    async def connect_all(self) -> dict:
        rss_before = _own_rss()
        started = time.perf_counter()
        slots = asyncio.Semaphore(self.args.concurrency)
        failures: list[str] = []
        await asyncio.gather(*(self._connect_one(i, slots, failures)
                               for i in range(self.args.start, self.args.start + self.args.count)))
        return {"event": "connected", "connected": len(self.clients), "failed": len(failures),
                "first_error": failures[0] if failures else None,
                "seconds": time.perf_counter() - started, "rss_before_bytes": rss_before}

    def stats(self) -> dict:
        open_now = sum(1 for c in self.clients if not c.closed.done())
        return {"event": "stats", "methods": self.counters.methods, "patches": self.counters.patches,
                "reported": self.counters.reported, "other": self.counters.other, "open": open_now,
                "rss_bytes": _own_rss()}

    async def close_all(self) -> None:
        for client in self.clients:
            client.close()
        if self.clients:
            await asyncio.wait([c.closed for c in self.clients], timeout=10)


def _emit(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _serve(args: argparse.Namespace, make: Callable[[argparse.Namespace], Any]) -> None:
    """The JSON-lines conversation with the parent, for any fleet with connect_all, stats and close_all."""
    fleet = make(args)
    _emit(await fleet.connect_all())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if line == "stats":
            _emit(fleet.stats())
        elif line in ("quit", ""):
            break
    await fleet.close_all()
    _emit({**fleet.stats(), "event": "closed"})


def parse_args(argv: list[str] | None = None, *, prog: str = "python -m bench.fleet", description: str | None = __doc__,
               modes: tuple[str, ...] = ("hub", "mosquitto")) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--mode", choices=modes, default="hub")
    parser.add_argument("--host", required=True, help="address to dial")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", default=None, help="CA PEM to trust; TLS when given")
    parser.add_argument("--hub-host-name", default=None, help="HostName for usernames and tokens (hub mode)")
    parser.add_argument("--key", default=None, help="the devices' shared key (hub mode)")
    parser.add_argument("--prefix", default="dev-")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=100, help="handshakes in flight")
    args = parser.parse_args(argv)
    if args.mode == "hub" and not (args.key and args.hub_host_name):
        parser.error("hub mode needs --key and --hub-host-name")
    return args


def run_fleet_process(args: argparse.Namespace, make: Callable[[argparse.Namespace], Any]) -> None:
    _raise_fd_limit()
    try:
        asyncio.run(_serve(args, make))
    except KeyboardInterrupt:
        pass


def main(argv: list[str] | None = None) -> None:
    shrink_tls_read_buffers()
    run_fleet_process(parse_args(argv), Fleet)


if __name__ == "__main__":
    main()
