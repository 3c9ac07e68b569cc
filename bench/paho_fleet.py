"""`python -m bench.paho_fleet`: the raw bench devices (bench/fleet.py) on paho-mqtt instead of the
project's codec, so that the benchmark can show why the fleet engine uses the codec.

paho-mqtt is the library azure-iot-device uses; the SDK pins it below 2, so paho-mqtt 2 and aiomqtt
(which needs 2) cannot be installed next to it. paho 1.6's documented external-loop hooks let one
asyncio loop drive every client (as aiomqtt does): a reader per socket calls loop_read, a writer
while paho has data to send, and a timer calls loop_misc (keepalive). Same JSON-lines protocol
with the parent as bench/fleet.py (hub mode only).
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import time
from typing import Any

import paho.mqtt.client as mqtt

from device.fleet.topics import device_subscriptions
from hubsettings import build_token

from .device_behaviour import DESIRED_PATCH, device_id, hub_reply, reported_ack
from .fleet import KEEPALIVE_SECONDS, TOKEN_TTL_SECONDS, TWIN_ANSWER_OK, Counters, _own_rss, parse_args, run_fleet_process


class PahoFleet:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.counters = Counters()
        self.clients: list[mqtt.Client] = []
        self.context = ssl.create_default_context(cafile=args.ca)
        self.loop = asyncio.get_running_loop()
        self._next_rid = 0
        self._misc: asyncio.Task | None = None

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        reply = hub_reply(message.topic)
        if reply is not None:
            self.counters.methods += 1
            client.publish(reply[0], reply[1], qos=1)
        elif message.topic.startswith(DESIRED_PATCH):
            self.counters.patches += 1
            self._next_rid += 1
            ack = reported_ack(message.payload, str(self._next_rid))
            if ack is not None:
                client.publish(ack[0], ack[1], qos=1)
        elif message.topic.startswith(TWIN_ANSWER_OK):
            self.counters.reported += 1
        else:
            self.counters.other += 1

    def _attach(self, client: mqtt.Client) -> None:
        loop = self.loop
        client.on_socket_open = lambda c, u, sock: loop.add_reader(sock, c.loop_read)
        client.on_socket_close = lambda c, u, sock: loop.remove_reader(sock)
        client.on_socket_register_write = lambda c, u, sock: loop.add_writer(sock, c.loop_write)
        client.on_socket_unregister_write = lambda c, u, sock: loop.remove_writer(sock)

    async def _connect_one(self, index: int) -> str | None:
        args = self.args
        device = device_id(args.prefix, index)
        client = mqtt.Client(client_id=device, clean_session=False, protocol=mqtt.MQTTv311)
        client.username_pw_set(f"{args.hub_host_name}/{device}/?api-version=2019-10-01",
                               build_token(f"{args.hub_host_name}/devices/{device}", args.key, ttl=TOKEN_TTL_SECONDS))
        client.tls_set_context(self.context)
        connected: asyncio.Future[int] = self.loop.create_future()
        client.on_connect = lambda c, u, flags, rc: connected.done() or connected.set_result(rc)
        client.on_message = self._on_message
        self._attach(client)
        try:
            # paho 1.6 dials and shakes hands (TCP + TLS) synchronously inside connect().
            client.connect(args.host, args.port, keepalive=KEEPALIVE_SECONDS)
            rc = await asyncio.wait_for(connected, 30)
        except Exception as e:  # noqa: BLE001 - counted and reported
            return f"{device}: {type(e).__name__}: {e}"
        if rc != 0:
            return f"{device}: CONNACK {rc}"
        client.subscribe([(topic, 1) for topic in device_subscriptions(device)])
        self.clients.append(client)
        return None

    async def connect_all(self) -> dict:
        rss_before = _own_rss()
        started = time.perf_counter()
        failures = [f for f in [await self._connect_one(i) for i in range(self.args.start, self.args.start + self.args.count)]
                    if f]
        self._misc = asyncio.get_running_loop().create_task(self._keepalive())
        return {"event": "connected", "connected": len(self.clients), "failed": len(failures),
                "first_error": failures[0] if failures else None, "seconds": time.perf_counter() - started,
                "rss_before_bytes": rss_before}

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(1)
            for client in self.clients:
                client.loop_misc()

    async def close_all(self) -> None:
        if self._misc is not None:
            self._misc.cancel()
        for client in self.clients:
            client.disconnect()

    def stats(self) -> dict:
        return {"event": "stats", "methods": self.counters.methods, "patches": self.counters.patches,
                "reported": self.counters.reported, "other": self.counters.other, "open": len(self.clients),
                "rss_bytes": _own_rss()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv, prog="python -m bench.paho_fleet", description=__doc__.split("\n\n")[0], modes=("hub",))
    if not args.ca:
        raise SystemExit("python -m bench.paho_fleet: --ca is required (devices use TLS)")
    run_fleet_process(args, PahoFleet)


if __name__ == "__main__":
    main()
