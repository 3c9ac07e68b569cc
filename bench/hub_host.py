"""`python -m bench.hub_host`: the emulator in a process of its own (so its RSS and CPU are its own),
persisted to SQLite (as shipped) or in memory, on a given loopback address, with N bench devices registered before it reports ready.

Prints one JSON line {"event": "ready", ...} on stdout, then serves until end of input, SIGTERM or
SIGINT. The devices share one bench-only key and carry the tags {"bench": "fleet", "index": i}, so a
job can target the first N devices with `tags.bench = 'fleet' AND tags.index < N`. They are registered
through the hub's bulk registration (Hub.create_devices), 1,000 per store transaction.

With --data-dir the hub persists to SQLite there, as the emulator ships (the bench's default); without
it, in memory (labelled rows only).
Commands on stdin, one per line: `stall-reset`, then `stall` answers {"event": "stall", ...} with the
longest event-loop stall since (stall_meter.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys
import time
from pathlib import Path

from emulator.hub import NewDevice
from emulator.server import EmulatorConfig, EmulatorServer

from .device_behaviour import device_id
from .stall_meter import StallMeter

#: A bench-only device key (base64 of 32 bytes); never a real credential.
BENCH_DEVICE_KEY = "YmVuY2gtb25seS1kZXZpY2Uta2V5LTMyLWJ5dGVzISE="


REGISTER_BATCH = 1000


async def register_devices(server: EmulatorServer, prefix: str, count: int) -> None:
    hub = server.hub
    assert hub is not None
    for start in range(0, count, REGISTER_BATCH):
        hub.create_devices([NewDevice(device_id(prefix, index), primary_key=BENCH_DEVICE_KEY,
                                      tags={"bench": "fleet", "index": index})
                            for index in range(start, min(count, start + REGISTER_BATCH))])
        await asyncio.sleep(0)


def _answer(line: str, meter: StallMeter) -> None:
    command = line.strip()
    if command == "stall-reset":
        meter.reset()
    elif command == "stall":
        sys.stdout.write(json.dumps({"event": "stall", **meter.report()}) + "\n")
        sys.stdout.flush()


async def _serve(args: argparse.Namespace) -> None:
    # The emulator's own port choice (443, or its fallback where 443 may not be bound), as users run it.
    ports = {} if args.rest_port is None else {"rest_port": args.rest_port}
    server = EmulatorServer(EmulatorConfig(address=args.address, in_memory=args.data_dir is None,
                                           data_dir=args.data_dir, write_discovery=False,
                                           mqtt_port=args.mqtt_port,
                                           amqp_port=args.amqp_port,  # only the telemetry row uses AMQP
                                           **ports))
    await server.start()
    meter = StallMeter()
    try:
        started = time.perf_counter()
        await register_devices(server, args.prefix, args.devices)
        assert server.certificates is not None
        ready = {"event": "ready", "host_name": server.host_name, "address": args.address,
                 "mqtt_port": server.mqtt_port, "rest_port": server.rest_port,
                 "ca_file": str(server.certificates.ca_cert), "cert_file": str(server.certificates.server_cert),
                 "key_file": str(server.certificates.server_key), "devices": args.devices,
                 "register_seconds": time.perf_counter() - started}
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        meter.start()

        async def commands() -> None:  # until the parent closes our stdin (or dies)
            while line := await reader.readline():
                _answer(line.decode(errors="replace"), meter)

        eof = asyncio.ensure_future(commands())
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait({eof, waiter}, return_when=asyncio.FIRST_COMPLETED)
        eof.cancel()
        waiter.cancel()
    finally:
        meter.stop()
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hub_host", description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--mqtt-port", type=int, default=8883)
    parser.add_argument("--rest-port", type=int, default=None,
                        help="default: the emulator's own choice (443, else its fallback port)")
    parser.add_argument("--devices", type=int, default=0)
    parser.add_argument("--prefix", default="dev-")
    parser.add_argument("--data-dir", type=Path, default=None, help="persist to SQLite here (default: in memory)")
    parser.add_argument("--amqp-port", type=int, default=None, help="listen for AMQP here (default: no AMQP)")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
