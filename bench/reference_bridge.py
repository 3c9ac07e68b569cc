"""`python -m bench.reference_bridge`: the reference for the REST-driven rows, built from reference parts.

A direct method on the emulator is HTTPS in (POST /twins/{id}/methods, keep-alive), MQTT out to the
device and back. This process does the same two hops with off-the-shelf parts: an aiohttp HTTPS server
(the same server library as the emulator's REST front) that forwards each request over one long-lived
MQTT connection to mosquitto at QoS 1 (`ref/{device}/req/{rid}`) and answers 200 with the device's
response, in IoT Hub's response shape. No registry, no SAS check beyond the header's presence, no store:
it is the floor for the same request shape on the same machine.

Prints {"event": "ready", "port": N} on stdout, then serves until end of input or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
import sys

RESPONSE_TIMEOUT_S = 30.0


async def _serve(args: argparse.Namespace) -> None:
    from aiohttp import web  # the emulator's own dependency

    from .mosquitto_ref import Requester

    requester = Requester()
    await requester.open(args.mqtt_host, args.mqtt_port, args.ca)

    async def invoke(request: web.Request) -> web.Response:
        if not request.headers.get("Authorization"):
            return web.json_response({"Message": "missing Authorization"}, status=401)
        body = await request.json()
        answer = await asyncio.wait_for(requester.request(request.match_info["device"], body.get("methodName", "")),
                                        RESPONSE_TIMEOUT_S)
        return web.json_response({"status": 200, "payload": json.loads(answer)})

    app = web.Application()
    app.router.add_post("/twins/{device}/methods", invoke)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    site = web.TCPSite(runner, args.address, 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    sys.stdout.write(json.dumps({"event": "ready", "port": port}) + "\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def until_eof() -> None:
        while await reader.readline():
            pass

    eof, stopped = asyncio.ensure_future(until_eof()), asyncio.ensure_future(stop.wait())
    await asyncio.wait({eof, stopped}, return_when=asyncio.FIRST_COMPLETED)
    eof.cancel()
    stopped.cancel()
    requester.close()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reference_bridge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", required=True, help="loopback address to serve HTTPS on (port: any free)")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--mqtt-host", required=True)
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--ca", required=True, help="CA of mosquitto's TLS listener")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
