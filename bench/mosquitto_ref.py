"""5. The reference: the same request/response pattern through mosquitto, with raw MQTT clients.

A requester publishes a request QoS 0 to `ref/{device}/req/{rid}`; the device answers QoS 1 on
`ref/res/{rid}` (as a method request and the SDK's method response travel). Measured over TLS (with a
certificate from the emulator's own generator, like for like) and over plain TCP (the floor): sequential
round trips, fan-out to N devices, sustained throughput, and broker RSS per connection. Skipped with a
note when mosquitto is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emulator.certs import ensure_certificates
from mqttcodec import Connect, Publish

from .context import BenchContext
from .device_behaviour import REFERENCE_RESPONSES, device_id, reference_request_topic
from .fleet import fleet_parts
from .mqtt_client import MqttClient, client_ssl_context, open_client
from .processes import Child, free_loopback_address, python_module, rss_bytes
from .stats import LatencySummary, summarize

INSTALL_HINT = "sudo apt-get install -y mosquitto (Debian/Ubuntu) or brew install mosquitto (macOS)"
SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin", "/usr/local/opt/mosquitto/sbin")
TLS_PORT, PLAIN_PORT = 8883, 1883


def find_mosquitto() -> str | None:
    """The mosquitto binary: on PATH, or in the sbin directories packages install it to."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for directory in SEARCH_DIRS:
        candidate = Path(directory) / "mosquitto"
        if candidate.is_file():
            return str(candidate)
    return None


def mosquitto_version(binary: str) -> str | None:
    try:
        out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in (out.stdout + out.stderr).splitlines():
        if line.startswith("mosquitto version"):
            return line.split()[-1]
    return None


def broker_config(address: str, cert_file: Path, key_file: Path, user: str) -> str:
    """mosquitto.conf: a TLS and a plain listener on our own loopback address, anonymous, unlimited.
    TCP_NODELAY as the emulator has it (asyncio sets it): without it Nagle adds ~40 ms per round trip."""
    return "\n".join([
        "per_listener_settings false", "allow_anonymous true", "set_tcp_nodelay true", "persistence false",
        f"user {user}", "max_queued_messages 100000", "max_inflight_messages 0", "log_type error", "log_dest stderr",
        f"listener {TLS_PORT} {address}", f"certfile {cert_file}", f"keyfile {key_file}", "max_connections -1",
        f"listener {PLAIN_PORT} {address}", "max_connections -1", ""])


class Requester:
    """One service-like MQTT client: sends requests, matches responses by rid."""

    def __init__(self) -> None:
        self.client: MqttClient | None = None
        self._pending: dict[str, asyncio.Future[None]] = {}

    def _on_publish(self, client: MqttClient, packet: Publish) -> None:
        waiter = self._pending.pop(packet.topic[len(REFERENCE_RESPONSES):], None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def open(self, host: str, port: int, ca_file: str | None) -> None:
        context = client_ssl_context(ca_file) if ca_file else None
        self.client = await open_client(host, port, Connect(f"requester-{uuid.uuid4().hex[:8]}", keepalive=1200),
                                        ssl_context=context, on_publish=self._on_publish)
        await self.client.subscribe(REFERENCE_RESPONSES + "#", qos=1)

    def request(self, device: str) -> asyncio.Future[None]:
        assert self.client is not None
        rid = uuid.uuid4().hex
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[rid] = waiter
        self.client.publish(reference_request_topic(device, rid), b'{"methodName":"lockDoor"}', qos=0)
        return waiter

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


async def _sequential(host: str, port: int, ca_file: str | None, device: str, count: int, warmup: int,
                      time_cap: float) -> LatencySummary:
    requester = Requester()
    await requester.open(host, port, ca_file)
    try:
        for _ in range(warmup):
            await asyncio.wait_for(requester.request(device), 30)
        samples: list[float] = []
        deadline = time.perf_counter() + time_cap
        while len(samples) < count and time.perf_counter() < deadline:
            started = time.perf_counter()
            await asyncio.wait_for(requester.request(device), 30)
            samples.append(time.perf_counter() - started)
        return summarize(samples)
    finally:
        requester.close()


async def _fan_out(host: str, port: int, ca_file: str, devices: int, timeout: float) -> float:
    """Seconds from the first request to the last of `devices` responses (one request per device)."""
    requester = Requester()
    await requester.open(host, port, ca_file)
    try:
        started = time.perf_counter()
        waiters = [requester.request(device_id("dev-", i)) for i in range(devices)]
        await asyncio.wait_for(asyncio.gather(*waiters), timeout)
        return time.perf_counter() - started
    finally:
        requester.close()


async def _sustained(host: str, port: int, ca_file: str, devices: int, concurrency: int,
                     seconds: float) -> dict[str, Any]:
    """`concurrency` requests in flight for `seconds`; calls per second and their latency."""
    requester = Requester()
    await requester.open(host, port, ca_file)
    samples: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        device = device_id("dev-", index % devices)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await asyncio.wait_for(requester.request(device), 30)
            samples.append(time.perf_counter() - started)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        requester.close()
    return {"calls": len(samples), "seconds": elapsed, "per_second": len(samples) / elapsed,
            "latency": summarize(samples).to_json()}


def _wait_listening(address: str, port: int, broker: Child, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker.process.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {broker.process.returncode}: {broker.log_tail()}")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((address, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"mosquitto did not listen on {address}:{port} within {timeout:.0f} s")


@contextlib.contextmanager
def _fleets(ctx: BenchContext, address: str, port: int, ca_file: str | None, count: int,
            timeout: float) -> Iterator[list[dict[str, Any]]]:
    children: list[Child] = []
    try:
        for index, (start, part) in enumerate(fleet_parts(count)):
            argv = python_module("bench.fleet", "--mode", "mosquitto", "--host", address, "--port", str(port),
                                 "--start", str(start), "--count", str(part), *(["--ca", ca_file] if ca_file else []))
            children.append(Child(f"mosquitto-fleet-{port}-{index}", argv, ctx.log_dir))
        reports = [child.expect("connected", timeout) for child in children]
        failed = sum(r["failed"] for r in reports)
        if failed:
            raise RuntimeError(f"{failed} of {count} reference devices failed to connect: "
                               f"{next(r['first_error'] for r in reports if r['failed'])}")
        yield reports
    finally:
        for child in children:
            child.stop()


def run(ctx: BenchContext) -> dict[str, Any]:
    """Measure the reference; returns figures the other benchmarks compare against (empty if skipped)."""
    binary = find_mosquitto()
    if binary is None:
        ctx.results.note(f"mosquitto not installed: reference skipped (install: {INSTALL_HINT}; "
                         "or `make bench-deps` if the Makefile has it)")
        return {}
    ctx.budget.require(30, "mosquitto reference")
    ctx.results.machine["mosquitto"] = mosquitto_version(binary)
    sizes = ctx.sizes
    address = free_loopback_address((TLS_PORT, PLAIN_PORT), ctx.used_addresses)
    ctx.used_addresses.add(address)
    reference: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-mosquitto-") as temp:
        cert_dir = Path(temp) / "certs"
        paths = ensure_certificates(cert_dir, [address])
        config = Path(temp) / "mosquitto.conf"
        config.write_text(broker_config(address, paths.server_cert, paths.server_key, getpass.getuser()))
        with Child("mosquitto", [binary, "-c", str(config)], ctx.log_dir, reads_stdin=False) as broker:
            _wait_listening(address, TLS_PORT, broker)
            _wait_listening(address, PLAIN_PORT, broker)
            ca = str(paths.ca_cert)
            ctx.progress("  mosquitto: sequential round trips (TLS, plain TCP)")
            with _fleets(ctx, address, TLS_PORT, ca, 1, 60):
                reference["roundtrip"] = asyncio.run(_sequential(
                    address, TLS_PORT, ca, device_id("dev-", 0), sizes.roundtrip_calls, sizes.roundtrip_warmup,
                    ctx.budget.cap(60)))
            with _fleets(ctx, address, PLAIN_PORT, None, 1, 60):
                reference["roundtrip_plain"] = asyncio.run(_sequential(
                    address, PLAIN_PORT, None, device_id("dev-", 0), sizes.roundtrip_calls, sizes.roundtrip_warmup,
                    ctx.budget.cap(60)))
            most = max(max(sizes.fanout_devices), sizes.capacity_devices)
            ctx.budget.require(30, "mosquitto fan-out and capacity")
            idle_rss = rss_bytes(broker.pid)
            ctx.progress(f"  mosquitto: connecting {most} devices (TLS)")
            with _fleets(ctx, address, TLS_PORT, ca, most, ctx.budget.cap(240)) as reports:
                held_rss = rss_bytes(broker.pid)
                reference["connect_seconds"] = max(r["seconds"] for r in reports)
                if idle_rss and held_rss:
                    reference["rss_per_connection"] = (held_rss - idle_rss) / most
                    reference["rss_held"] = held_rss
                reference["fanout"] = {}
                for n in sizes.fanout_devices:
                    ctx.progress(f"  mosquitto: fan-out to {n} devices")
                    reference["fanout"][n] = asyncio.run(_fan_out(address, TLS_PORT, ca, n, ctx.budget.cap(60)))
                ctx.progress(f"  mosquitto: sustained, {sizes.sustained_concurrency} in flight")
                reference["sustained"] = asyncio.run(_sustained(
                    address, TLS_PORT, ca, most, sizes.sustained_concurrency, sizes.sustained_seconds))
    ctx.results.details["mosquitto"] = {
        k: (v.to_json() if isinstance(v, LatencySummary) else v) for k, v in reference.items()}
    plain = reference.get("roundtrip_plain")
    if plain:
        ctx.results.note(f"mosquitto over plain TCP (no TLS): round trip p50 {plain.p50_ms:.3f} ms, "
                         f"p99 {plain.p99_ms:.3f} ms (the floor for loopback MQTT here).")
    return reference
