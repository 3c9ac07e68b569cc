"""`python -m bench.sdk_device`: one azure-iot-device client answering every direct method at once.

The connection string comes from $BENCH_DEVICE_CONNECTION_STRING (never the command line, where `ps`
shows it). Prints {"event": "connected"} when its handler is attached; stops at end of input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sdk_device", description=__doc__)
    parser.add_argument("--ca", required=True, help="CA PEM of the emulator")
    args = parser.parse_args(argv)
    from azure.iot.device import IoTHubDeviceClient, MethodResponse

    with open(args.ca) as ca:
        ca_pem = ca.read()
    client = IoTHubDeviceClient.create_from_connection_string(os.environ["BENCH_DEVICE_CONNECTION_STRING"],
                                                              server_verification_cert=ca_pem)
    answered = 0

    def on_method(request):  # the SDK's handler thread
        nonlocal answered
        answered += 1
        client.send_method_response(MethodResponse.create_from_method_request(request, 200, {"locked": True}))

    client.on_method_request_received = on_method
    client.connect()
    print(json.dumps({"event": "connected"}), flush=True)
    try:
        sys.stdin.read()  # until the parent closes our stdin
    except KeyboardInterrupt:
        pass
    finally:
        print(json.dumps({"event": "closed", "methods": answered}), flush=True)
        client.shutdown()


if __name__ == "__main__":
    main()
