"""`python -m bench.hub_host`: the emulator in a process of its own (so its RSS and CPU are its own),
in memory, on a given loopback address, with N bench devices registered before it reports ready.

Prints one JSON line {"event": "ready", ...} on stdout, then serves until end of input, SIGTERM or
SIGINT. The devices share one bench-only key and carry the tags {"bench": "fleet", "index": i}, so a
job can target the first N devices with `tags.bench = 'fleet' AND tags.index < N`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys
import time

from emulator.server import EmulatorConfig, EmulatorServer

from .device_behaviour import device_id

#: A bench-only device key (base64 of 32 bytes); never a real credential.
BENCH_DEVICE_KEY = "YmVuY2gtb25seS1kZXZpY2Uta2V5LTMyLWJ5dGVzISE="


def register_devices(server: EmulatorServer, prefix: str, count: int) -> None:
    hub = server.hub
    assert hub is not None
    for index in range(count):
        name = device_id(prefix, index)
        hub.create_device(name, primary_key=BENCH_DEVICE_KEY)
        hub.update_twin(name, {"tags": {"bench": "fleet", "index": index}})


async def _serve(args: argparse.Namespace) -> None:
    server = EmulatorServer(EmulatorConfig(address=args.address, in_memory=True, write_discovery=False,
                                           mqtt_port=args.mqtt_port, rest_port=args.rest_port))
    await server.start()
    try:
        started = time.perf_counter()
        register_devices(server, args.prefix, args.devices)
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
        eof = asyncio.ensure_future(reader.read())  # the parent closes our stdin (or dies): stop
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait({eof, waiter}, return_when=asyncio.FIRST_COMPLETED)
        eof.cancel()
        waiter.cancel()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hub_host", description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--mqtt-port", type=int, default=8883)
    parser.add_argument("--rest-port", type=int, default=9443)
    parser.add_argument("--devices", type=int, default=0)
    parser.add_argument("--prefix", default="dev-")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
