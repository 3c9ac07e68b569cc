"""3. Capacity: device connections held and the emulator's RSS per connected device; sustained
direct-method throughput with many invocations in flight (raw HTTPS keep-alive callers)."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from typing import Any

from hubsettings import build_token, wellknown

from .context import BenchContext
from .device_behaviour import device_id
from .hubs import API_VERSION, HubInfo
from .processes import cpu_seconds, rss_bytes
from .report import Figure, Target
from .stats import summarize

SECTION = "3 capacity"
MIB = 1024 * 1024
CONNECTIONS_TARGET = Target(">=", 10000, "connections")
RSS_TARGET = Target("<=", 1024, "MiB")
IDLE_SAMPLE_SECONDS = 3.0


#: Descriptors an emulator keeps for itself beyond its device connections (listeners, SQLite, logs, ...).
FD_RESERVE = 500
GIB = 1024 * MIB


def open_files_limit() -> int:
    """The hard open-files limit of a process here (what no process can raise)."""
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 100_000 if hard == resource.RLIM_INFINITY else hard


def fd_limit_connections() -> int:
    """As many device connections as one process may hold here: its hard open-files limit, less
    FD_RESERVE, in whole thousands."""
    return max(0, (open_files_limit() - FD_RESERVE) // 1000 * 1000)


def run_fd_limit(ctx: BenchContext) -> None:
    """Device connections held up to the open-files limit of one process (a fresh emulator, the fleet
    split over several processes), with RSS per connection, and what 100,000 would take."""
    from .hubs import running_fleets, running_hub  # the fleet stage's helpers
    count = ctx.sizes.fd_limit_devices if ctx.sizes.fd_limit_devices is not None else fd_limit_connections()
    if count <= ctx.sizes.capacity_devices:
        ctx.results.note(f"connections up to the open-files limit: skipped ({count:,} is not above the "
                         f"{ctx.sizes.capacity_devices:,} already measured)")
        return
    ctx.budget.require(60 + count / 300, "connections up to the open-files limit")
    ctx.progress(f"  registering and connecting {count:,} raw MQTT devices (the open-files limit)")
    label = f"near the open-files limit of one process ({open_files_limit():,})"
    with running_hub(ctx, "limit-hub", count) as hub:
        time.sleep(1.0)
        registered_rss = rss_bytes(hub.pid)
        with running_fleets(ctx, hub, count, ctx.budget.cap(300)) as fleets:
            connect_seconds = max(report["seconds"] for _, report in fleets)
            connected = sum(report["connected"] for _, report in fleets)
            time.sleep(1.0)
            held_rss = rss_bytes(hub.pid)
            idle = idle_cpu_percent(hub.pid)
    ctx.results.add(Figure(SECTION, f"device connections held (TLS), {label}", connected, "connections"))
    ctx.results.add(Figure(SECTION, f"  emulator RSS with {connected:,} devices connected",
                           held_rss / MIB if held_rss else None, "MiB"))
    per_device = (held_rss - registered_rss) / connected if held_rss and registered_rss and connected else None
    ctx.results.add(Figure(SECTION, "  emulator RSS per connected device", per_device / 1024 if per_device else None,
                           "KiB"))
    ctx.results.add(Figure(SECTION, f"  connect {connected:,} devices (TLS handshake + CONNECT)",
                           connected / connect_seconds if connect_seconds else None, "conn/s"))
    ctx.results.add(Figure(SECTION, f"  emulator CPU while {connected:,} devices sit idle", idle, "% of a core"))
    if per_device and registered_rss:
        registered_per_device = registered_rss / count
        projected = 100_000 * (per_device + registered_per_device)
        ctx.results.add(Figure(SECTION, "  projected RSS for 100,000 connected devices (registry + connections, "
                                        "linear from this row)", projected / GIB, "GiB"))
    ctx.results.details["fd_limit"] = {"connected": connected, "registered_rss_bytes": registered_rss,
                                       "held_rss_bytes": held_rss, "connect_seconds": connect_seconds}


def idle_cpu_percent(pid: int, seconds: float = IDLE_SAMPLE_SECONDS) -> float | None:
    """CPU the emulator burns while its devices sit idle (keepalive and token sweeps), in % of a core."""
    before = cpu_seconds(pid)
    started = time.monotonic()
    time.sleep(seconds)
    after = cpu_seconds(pid)
    if before is None or after is None:
        return None
    return 100.0 * (after - before) / (time.monotonic() - started)


def record_connections(ctx: BenchContext, hub: HubInfo, registered_rss: int | None, connected: int,
                       connect_seconds: float, reference: dict[str, Any]) -> None:
    held_rss = rss_bytes(hub.pid)
    ctx.results.add(Figure(SECTION, "device connections held (TLS)", connected, "connections",
                           target=CONNECTIONS_TARGET if connected >= CONNECTIONS_TARGET.threshold else None))
    ctx.results.add(Figure(SECTION, f"emulator RSS with {connected:,} devices connected",
                           held_rss / MIB if held_rss else None, "MiB",
                           reference=reference["rss_held"] / MIB if reference.get("rss_held") else None,
                           target=RSS_TARGET if connected >= 10000 else None, vs="tls-conns"))
    per_device = (held_rss - registered_rss) / 1024 / connected if held_rss and registered_rss and connected else None
    ref_per = reference.get("rss_per_connection")
    ctx.results.add(Figure(SECTION, "emulator RSS per connected device", per_device, "KiB",
                           reference=ref_per / 1024 if ref_per else None, vs="tls-conns"))
    ref_seconds = reference.get("connect_seconds")
    ctx.results.add(Figure(SECTION, f"connect {connected:,} devices (TLS handshake + CONNECT)",
                           connected / connect_seconds if connect_seconds else None, "conn/s",
                           reference=connected / ref_seconds if ref_seconds else None, vs="tls-conns"))
    idle = idle_cpu_percent(hub.pid)
    ctx.results.add(Figure(SECTION, f"emulator CPU while {connected:,} devices sit idle", idle, "% of a core"))
    ctx.results.details["capacity"] = {"registered_rss_bytes": registered_rss, "held_rss_bytes": held_rss,
                                       "connected": connected, "connect_seconds": connect_seconds}
    if registered_rss:
        ctx.results.note(f"Emulator RSS with {connected:,} devices registered but none connected: "
                         f"{registered_rss / MIB:.0f} MiB (the per-device figure counts connections only).")


async def sustained_calls(hub: HubInfo, devices: int, concurrency: int, seconds: float) -> dict[str, Any]:
    """`concurrency` keep-alive HTTPS connections, each calling one device's method again and again for
    `seconds`. The callers speak HTTP/1.1 by hand over asyncio's TLS streams: on 2 shared cores a heavy
    client library would take CPU from the servers it measures (aiohttp's client cost about 100 us a
    call, as much as half the emulator's), and the MQTT requester of [mqtt-rr] is as lean."""
    context = ssl.create_default_context(cafile=hub.ca_file)
    host = f"{hub.host_name}:{hub.rest_port}"
    token = build_token(host, wellknown.POLICIES[wellknown.OWNER_POLICY][0], policy=wellknown.OWNER_POLICY)
    body = json.dumps({"methodName": "lockDoor", "payload": {"minutes": 1}, "responseTimeoutInSeconds": 30,
                       "connectTimeoutInSeconds": 0}).encode()
    samples: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        request = (f"POST /twins/{device_id('dev-', index % devices)}/methods?api-version={API_VERSION} HTTP/1.1\r\n"
                   f"Host: {host}\r\nAuthorization: {token}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        reader, writer = await asyncio.open_connection(hub.address, hub.rest_port, ssl=context,
                                                       server_hostname=hub.address)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(request)
                status, _ = await read_http_response(reader)
                if status != 200:
                    errors.append(f"HTTP {status}")
                    return
                samples.append(time.perf_counter() - started)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"calls": len(samples), "seconds": elapsed, "per_second": len(samples) / elapsed,
            "errors": errors[:3], "latency": summarize(samples).to_json() if samples else None}


async def read_http_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length body (what aiohttp servers send): status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, header_block = head.partition(b"\r\n")
    length = None
    for line in header_block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise ValueError(f"an HTTP response without Content-Length: {status_line!r}")
    return int(status_line.split()[1]), await reader.readexactly(length)


def run_sustained(ctx: BenchContext, hub: HubInfo, devices: int, reference: dict[str, Any]) -> None:
    sizes = ctx.sizes
    ctx.budget.require(sizes.sustained_seconds + 10, f"{SECTION} sustained throughput")
    ctx.progress(f"  sustained method throughput: {sizes.sustained_concurrency} in flight, "
                 f"{sizes.sustained_seconds:.0f} s")
    outcome = asyncio.run(sustained_calls(hub, devices, sizes.sustained_concurrency, sizes.sustained_seconds))
    ctx.results.details["sustained"] = outcome
    label = f"sustained methods, raw HTTPS keep-alive x{sizes.sustained_concurrency}, {devices:,} raw devices"
    bridge, mqtt_only = reference.get("https_sustained"), reference.get("sustained")
    ctx.results.add(Figure(SECTION, label, outcome["per_second"], "calls/s",
                           reference=bridge["per_second"] if bridge else None, vs="https-bridge"))
    if outcome["latency"]:
        ctx.results.add(Figure(SECTION, f"  latency p50 at {sizes.sustained_concurrency} in flight",
                               outcome["latency"]["p50_ms"], "ms",
                               reference=bridge["latency"]["p50_ms"] if bridge and bridge["latency"] else None,
                               vs="https-bridge"))
    ctx.results.add(Figure(SECTION, f"  the same rate against MQTT-only request/response "
                                    f"({sizes.sustained_concurrency} in flight on one requester connection)",
                           outcome["per_second"], "calls/s",
                           reference=mqtt_only["per_second"] if mqtt_only else None, vs="mqtt-rr"))
    if outcome["errors"]:
        ctx.results.note(f"sustained throughput: calls failed ({', '.join(outcome['errors'])})")
