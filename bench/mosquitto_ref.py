"""5. The reference: the same request/response patterns through mosquitto, with raw MQTT clients.

Every reference client is long-lived and speaks QoS 1 both ways. A requester (one MQTT client) publishes a
request to `ref/{device}/req/{rid}`; the device answers on `ref/res/{rid}/{device}`. Measured over TLS
(a certificate from the emulator's own generator, like for like) and, for MQTT alone, over plain TCP:
- MQTT request/response, sequential: requester -> broker -> device -> broker -> requester;
- the REST-driven pattern, sequential and sustained: HTTPS keep-alive -> an aiohttp bridge -> mosquitto
  -> device and back (bench/reference_bridge.py), the same two hops as a direct method on the emulator;
- fan-out: ONE request published to `ref/all/req/{rid}`, which every connected device subscribes to,
  every answer collected (the equivalent of a method job over every device); to fewer devices than are
  connected, one request per device;
- broker RSS per connection. Skipped with a note when mosquitto is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emulator.certs import CertificatePaths, ensure_certificates
from mqttcodec import Connect, Publish

from .context import BenchContext
from .device_behaviour import BROADCAST, REFERENCE_RESPONSES, device_id, reference_request_topic, reference_rid
from .bench_capacity import sustained_calls
from .bench_roundtrip import time_calls
from .fleet import fleet_parts
from .hubs import HubInfo, RawServiceCaller, SdkServiceCaller
from .mqtt_client import MqttClient, client_ssl_context, open_client
from .processes import Child, free_loopback_address, python_module, rss_bytes
from .report import Figure
from .stats import LatencySummary, summarize

SECTION = "0 references"
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
    """One long-lived service-like MQTT client: QoS 1 requests, responses matched by rid."""

    def __init__(self) -> None:
        self.client: MqttClient | None = None
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._collecting: dict[str, tuple[set[str], int, asyncio.Future[int]]] = {}

    def _on_publish(self, client: MqttClient, packet: Publish) -> None:
        rid = reference_rid(packet.topic)
        waiter = self._pending.pop(rid, None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(bytes(packet.payload))
            return
        collecting = self._collecting.get(rid)
        if collecting is not None:
            answered, expected, done = collecting
            answered.add(packet.topic)  # one per device: a duplicate (DUP resend) is not counted twice
            if len(answered) >= expected and not done.done():
                done.set_result(len(answered))

    async def open(self, host: str, port: int, ca_file: str | None) -> None:
        context = client_ssl_context(ca_file) if ca_file else None
        self.client = await open_client(host, port, Connect(f"requester-{uuid.uuid4().hex[:8]}", keepalive=1200),
                                        ssl_context=context, on_publish=self._on_publish)
        await self.client.subscribe(REFERENCE_RESPONSES + "#", qos=1)

    def request(self, device: str, method_name: str = "lockDoor") -> asyncio.Future[bytes]:
        """Publish one request (QoS 1); the future resolves with the device's answer."""
        assert self.client is not None
        rid = uuid.uuid4().hex
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[rid] = waiter
        self.client.publish(reference_request_topic(device, rid), json.dumps({"methodName": method_name}).encode(),
                            qos=1)
        return waiter

    def broadcast(self, expected: int) -> asyncio.Future[int]:
        """Publish one request to every device (QoS 1); resolves when `expected` devices answered."""
        assert self.client is not None
        rid = uuid.uuid4().hex
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._collecting[rid] = (set(), expected, done)
        done.add_done_callback(lambda _: self._collecting.pop(rid, None))
        self.client.publish(reference_request_topic(BROADCAST, rid), b'{"methodName":"lockDoor"}', qos=1)
        return done

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


async def _fan_out(host: str, port: int, ca_file: str, devices: int, connected: int, timeout: float) -> float:
    """Seconds from the request to the last of `devices` responses: one broadcast request when every
    connected device is meant, else one request per device."""
    requester = Requester()
    await requester.open(host, port, ca_file)
    try:
        started = time.perf_counter()
        if devices == connected:
            await asyncio.wait_for(requester.broadcast(devices), timeout)
        else:
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


@contextlib.contextmanager
def _bridge(ctx: BenchContext, address: str, paths: CertificatePaths) -> Iterator[HubInfo]:
    """bench.reference_bridge on `address` (HTTPS with the same kind of certificate as the emulator's),
    forwarding to the broker's TLS listener; described as a HubInfo so the emulator's callers can use it."""
    argv = python_module("bench.reference_bridge", "--address", address, "--cert", str(paths.server_cert),
                         "--key", str(paths.server_key), "--mqtt-host", address, "--mqtt-port", str(TLS_PORT),
                         "--ca", str(paths.ca_cert))
    with Child("reference-bridge", argv, ctx.log_dir) as child:
        ready = child.expect("ready", 60)
        yield HubInfo(child, address, address, TLS_PORT, ready["port"], str(paths.ca_cert), str(paths.server_cert),
                      str(paths.server_key), 0.0)


def _bridge_round_trips(ctx: BenchContext, bridge: HubInfo) -> dict[str, LatencySummary]:
    """Sequential calls through the bridge to one raw device with the emulator's own callers: raw HTTPS
    keep-alive, raw HTTPS with a new TLS connection per call, and the azure-iot-hub SDK."""
    sizes = ctx.sizes
    device = device_id("dev-", 0)
    keep_alive, new_tls = RawServiceCaller(bridge), RawServiceCaller(bridge, keep_alive=False)
    callers: list[tuple[str, Any]] = [("https_keepalive", keep_alive), ("https_new_tls", new_tls)]
    try:
        callers.append(("https_sdk", SdkServiceCaller(bridge)))
    except Exception as e:  # noqa: BLE001 - the SDK pairing is then compared with nothing, and says why
        ctx.results.note(f"azure-iot-hub SDK against the reference bridge not measured: {type(e).__name__}: {e}")
    summaries: dict[str, LatencySummary] = {}
    try:
        for key, caller in callers:
            samples, _ = time_calls(lambda: caller.invoke(device), sizes.roundtrip_calls, sizes.roundtrip_warmup,
                                    ctx.budget.cap(60))
            summaries[key] = summarize(samples)
    finally:
        keep_alive.close()
        new_tls.close()
    return summaries


def _reference_figures(ctx: BenchContext, reference: dict[str, Any]) -> None:
    """The references' own figures, in a section of their own (the ratios elsewhere divide by them)."""
    add = ctx.results.add
    for key, label in (("roundtrip", "mosquitto MQTT request/response QoS 1 over TLS, sequential p50 [mqtt-rr]"),
                       ("roundtrip_plain", "  the same over plain TCP (no TLS)"),
                       ("https_keepalive", "HTTPS keep-alive -> aiohttp bridge -> mosquitto, sequential p50 "
                                           "[https-bridge]"),
                       ("https_new_tls", "  the same, new TLS connection per call [https-bridge-new-tls]"),
                       ("https_sdk", "  the same, azure-iot-hub SDK caller [https-bridge-sdk]")):
        summary = reference.get(key)
        if summary:
            add(Figure(SECTION, f"{label} (n={summary.count})", summary.p50_ms, "ms"))
    for key, label in (("sustained", "mosquitto MQTT request/response QoS 1, sustained [mqtt-rr]"),
                       ("https_sustained", "HTTPS keep-alive -> aiohttp bridge -> mosquitto, sustained "
                                           "[https-bridge]")):
        outcome = reference.get(key)
        if outcome:
            add(Figure(SECTION, f"{label}, {ctx.sizes.sustained_concurrency} in flight", outcome["per_second"],
                       "calls/s"))
    for devices, seconds in (reference.get("fanout") or {}).items():
        add(Figure(SECTION, f"mosquitto fan-out to {devices:,} devices, all answers collected", seconds, "s"))


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
                ctx.progress("  HTTPS -> aiohttp bridge -> mosquitto: sequential round trips")
                with _bridge(ctx, address, paths) as bridge:
                    reference.update(_bridge_round_trips(ctx, bridge))
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
                    reference["fanout"][n] = asyncio.run(_fan_out(address, TLS_PORT, ca, n, most,
                                                                  ctx.budget.cap(60)))
                ctx.progress(f"  mosquitto: sustained, {sizes.sustained_concurrency} in flight")
                reference["sustained"] = asyncio.run(_sustained(
                    address, TLS_PORT, ca, most, sizes.sustained_concurrency, sizes.sustained_seconds))
                ctx.progress(f"  HTTPS -> aiohttp bridge -> mosquitto: sustained, {sizes.sustained_concurrency} "
                             "in flight")
                with _bridge(ctx, address, paths) as bridge:
                    reference["https_sustained"] = asyncio.run(sustained_calls(
                        bridge, most, sizes.sustained_concurrency, sizes.sustained_seconds))
    ctx.results.details["mosquitto"] = {
        k: (v.to_json() if isinstance(v, LatencySummary) else v) for k, v in reference.items()}
    _reference_figures(ctx, reference)
    return reference
