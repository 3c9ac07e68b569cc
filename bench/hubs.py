"""Bench-side handles on an emulator process, a device fleet and the service callers.

Service callers: the real SDK (`IoTHubRegistryManager`, one TCP+TLS connection per request, as the SDK
does), and a raw HTTPS caller (http.client) that keeps one connection alive or opens a new one per call,
to tell the SDK's own cost from the cost of its per-request TLS handshake.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.loopback import EMULATOR_PORTS, free_loopback_address
from hubsettings import build_token, wellknown

from .context import BenchContext
from .fleet import fleet_parts
from .hub_host import BENCH_DEVICE_KEY
from .processes import Child, python_module

API_VERSION = "2021-04-12"
START_TIMEOUT = 120.0
AMQP_PORT = 5671  # the emulator's AMQP listener (the SDKs always dial 5671)


@dataclass(frozen=True)
class HubInfo:
    child: Child
    address: str
    host_name: str
    mqtt_port: int
    rest_port: int
    ca_file: str
    cert_file: str
    key_file: str
    register_seconds: float

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def service_connection_string(self) -> str:
        return wellknown.service_connection_string(self.host_name, self.rest_port)

    def device_connection_string(self, device: str) -> str:
        return wellknown.device_connection_string(self.host_name, device, BENCH_DEVICE_KEY)


@contextlib.contextmanager
def running_hub(ctx: BenchContext, name: str, devices: int, *, in_memory: bool = False,
                amqp: bool = False) -> Iterator[HubInfo]:
    """An emulator (bench.hub_host) on a fresh 127.0.0.X with `devices` bench devices registered: as
    shipped, persisted to SQLite in a fresh data directory (under the run's log directory); or, for rows
    labelled so, in memory. With its AMQP listener (5671) when `amqp`."""
    address = free_loopback_address(EMULATOR_PORTS, exclude=ctx.used_addresses)
    ctx.used_addresses.add(address)
    data_dir = Path(tempfile.mkdtemp(prefix=f"{name}-data-", dir=ctx.log_dir))
    storage = () if in_memory else ("--data-dir", str(data_dir))
    listeners = ("--amqp-port", str(AMQP_PORT)) if amqp else ()
    with Child(name, python_module("bench.hub_host", "--address", address, "--devices", str(devices), *storage,
                                   *listeners), ctx.log_dir) as child:
        ready = child.expect("ready", START_TIMEOUT + devices / 500)
        yield HubInfo(child, address, ready["host_name"], ready["mqtt_port"], ready["rest_port"], ready["ca_file"],
                      ready["cert_file"], ready["key_file"], ready["register_seconds"])


class RawServiceCaller:
    """POST /twins/{id}/methods over http.client: keep-alive, or a new connection per call."""

    def __init__(self, hub: HubInfo, *, keep_alive: bool = True, timeout: float = 60.0):
        self._hub = hub
        self._keep_alive = keep_alive
        self._timeout = timeout
        self._ssl = ssl.create_default_context(cafile=hub.ca_file)
        self._connection: http.client.HTTPSConnection | None = None
        host = f"{hub.host_name}:{hub.rest_port}"
        key = wellknown.POLICIES[wellknown.OWNER_POLICY][0]
        self._token = build_token(host, key, policy=wellknown.OWNER_POLICY, ttl=6 * 3600)

    def _connect(self) -> http.client.HTTPSConnection:
        if self._connection is None or not self._keep_alive:
            if self._connection is not None:
                self._connection.close()
            self._connection = http.client.HTTPSConnection(self._hub.address, self._hub.rest_port,
                                                           context=self._ssl, timeout=self._timeout)
        return self._connection

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        connection = self._connect()
        data = None if body is None else json.dumps(body)
        headers = {"Authorization": self._token, "Content-Type": "application/json"}
        separator = "&" if "?" in path else "?"
        connection.request(method, f"{path}{separator}api-version={API_VERSION}", data, headers)
        response = connection.getresponse()
        payload = response.read()
        if not self._keep_alive:
            connection.close()
        return response.status, json.loads(payload) if payload else None

    def invoke(self, device: str, method_name: str = "lockDoor", payload: Any = None) -> dict[str, Any]:
        status, body = self.request("POST", f"/twins/{device}/methods",
                                    {"methodName": method_name, "payload": payload,
                                     "responseTimeoutInSeconds": 30, "connectTimeoutInSeconds": 0})
        if status != 200 or not isinstance(body, dict) or body.get("status") != 200:
            raise RuntimeError(f"method call on {device} answered HTTP {status}: {str(body)[:200]}")
        return body

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class SdkServiceCaller:
    """invoke_device_method through azure-iot-hub's IoTHubRegistryManager, trusting the hub's CA."""

    def __init__(self, hub: HubInfo):
        from azure.iot.hub import IoTHubRegistryManager  # heavy (uamqp): only when this benchmark runs
        from azure.iot.hub.models import CloudToDeviceMethod

        self._method_type = CloudToDeviceMethod
        self._manager = IoTHubRegistryManager.from_connection_string(hub.service_connection_string)
        self._manager.protocol.config.connection.verify = hub.ca_file

    def invoke(self, device: str, method_name: str = "lockDoor", payload: Any = None) -> Any:
        method = self._method_type(method_name=method_name, payload=payload, response_timeout_in_seconds=30,
                                   connect_timeout_in_seconds=0)
        result = self._manager.invoke_device_method(device, method)
        if result.status != 200:
            raise RuntimeError(f"method call on {device} answered status {result.status}")
        return result

    def close(self) -> None:
        pass


@contextlib.contextmanager
def running_fleets(ctx: BenchContext, hub: HubInfo, count: int,
                   timeout: float) -> Iterator[list[tuple[Child, dict[str, Any]]]]:
    """`count` raw-MQTT devices (dev-00000...) split over fleet processes; every one must connect."""
    with contextlib.ExitStack() as stack:
        children = []
        for index, (start, part) in enumerate(fleet_parts(count)):
            argv = python_module("bench.fleet", "--mode", "hub", "--host", hub.address, "--port",
                                 str(hub.mqtt_port), "--ca", hub.ca_file, "--hub-host-name", hub.host_name,
                                 "--key", BENCH_DEVICE_KEY, "--start", str(start), "--count", str(part))
            children.append(stack.enter_context(Child(f"hub-fleet-{index}", argv, ctx.log_dir)))
        fleets = [(child, child.expect("connected", timeout)) for child in children]
        failed = sum(report["failed"] for _, report in fleets)
        if failed:
            first = next(report["first_error"] for _, report in fleets if report["failed"])
            raise RuntimeError(f"{failed} of {count} devices failed to connect to the emulator: {first}")
        yield fleets


def fleet_counters(fleets: list[tuple[Child, dict[str, Any]]]) -> dict[str, int]:
    """Methods answered, desired patches received, reported patches accepted, connections open and
    the fleet processes' RSS, summed over the fleets."""
    totals = {"methods": 0, "patches": 0, "reported": 0, "open": 0, "rss_bytes": 0}
    for child, _ in fleets:
        child.send("stats")
        stats = child.expect("stats", 30)
        for key in totals:
            totals[key] += stats.get(key) or 0
    return totals
