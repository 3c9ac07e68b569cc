"""1. Direct-method round trip, sequential: service invoke -> emulator -> device handler -> response.

Four pairings separate the costs: the real SDKs on both ends (the target), the SDK service with a raw
MQTT device, a raw HTTPS caller opening a new TLS connection per call (what the SDK does) and one keeping
its connection alive, with a raw device. The emulator runs in its own process; so does each device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .context import BenchContext
from .hubs import HubInfo, RawServiceCaller, SdkServiceCaller, running_fleets, running_hub
from .processes import Child, python_module
from .report import Figure, Target
from .stats import LatencySummary, summarize

SECTION = "1 round trip"
RAW_DEVICE, SDK_DEVICE = "dev-00000", "dev-00001"
P50_TARGET = Target("<=", 5.0, "ms")
VARIANT_TIME_CAP_S = 90.0


def time_calls(call: Callable[[], Any], count: int, warmup: int, time_cap: float,
               clock: Callable[[], float] = time.perf_counter) -> tuple[list[float], bool]:
    """`count` sequential timed calls after `warmup` untimed ones; stops early after `time_cap`
    seconds. Returns (samples in seconds, whether all `count` ran)."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    deadline = clock() + time_cap
    while len(samples) < count:
        started = clock()
        call()
        ended = clock()
        samples.append(ended - started)
        if ended > deadline:
            break
    return samples, len(samples) >= count


def run(ctx: BenchContext, reference: dict[str, Any]) -> None:
    ctx.budget.require(30, SECTION)
    sizes = ctx.sizes
    with running_hub(ctx, "roundtrip-hub", devices=2) as hub, \
            running_fleets(ctx, hub, count=1, timeout=60), \
            _sdk_device(ctx, hub) as _:
        sdk, keep_alive = SdkServiceCaller(hub), RawServiceCaller(hub)
        new_tls = RawServiceCaller(hub, keep_alive=False)
        variants: list[tuple[str, str, Any, str]] = [
            ("sdk_sdk", "SDK service -> SDK device", sdk, SDK_DEVICE),
            ("sdk_raw", "SDK service -> raw device", sdk, RAW_DEVICE),
            ("newtls_raw", "raw HTTPS, new TLS per call -> raw device", new_tls, RAW_DEVICE),
            ("keepalive_sdk", "raw HTTPS keep-alive -> SDK device", keep_alive, SDK_DEVICE),
            ("keepalive_raw", "raw HTTPS keep-alive -> raw device", keep_alive, RAW_DEVICE),
        ]
        summaries: dict[str, LatencySummary] = {}
        for key, label, caller, device in variants:
            ctx.budget.require(10, f"{SECTION} {label}")
            ctx.progress(f"  {label}: {sizes.roundtrip_calls} calls")
            samples, complete = time_calls(lambda: caller.invoke(device), sizes.roundtrip_calls,
                                           sizes.roundtrip_warmup, ctx.budget.cap(VARIANT_TIME_CAP_S))
            summaries[key] = summary = summarize(samples)
            if not complete:
                ctx.results.note(f"{label}: stopped after {len(samples)} of {sizes.roundtrip_calls} calls "
                                 f"(time cap {VARIANT_TIME_CAP_S:.0f} s)")
            _add_figures(ctx, key, label, summary, reference)
        keep_alive.close()
        new_tls.close()
    ctx.results.details["roundtrip"] = {k: s.to_json() for k, s in summaries.items()}
    _explain(ctx, summaries)


#: Which reference each pairing is compared with: the same caller and the same raw device, through the
#: aiohttp + mosquitto bridge. Pairings with the SDK device have no such reference (it would need the
#: SDK device on plain topics) and show none.
REFERENCE_OF = {"keepalive_raw": ("https_keepalive", "https-bridge"),
                "newtls_raw": ("https_new_tls", "https-bridge-new-tls"),
                "sdk_raw": ("https_sdk", "https-bridge-sdk")}


def _add_figures(ctx: BenchContext, key: str, label: str, summary: LatencySummary,
                 reference: dict[str, Any]) -> None:
    full = key in ("sdk_sdk", "keepalive_raw")
    quantiles = (("p50", "p50_ms"), ("p95", "p95_ms"), ("p99", "p99_ms")) if full else (("p50", "p50_ms"),)
    reference_key, vs = REFERENCE_OF.get(key, (None, ""))
    ref = reference.get(reference_key) if reference_key else None
    for name, attribute in quantiles:
        ctx.results.add(Figure(
            SECTION, f"{label} {name} (n={summary.count})", getattr(summary, attribute), "ms",
            reference=getattr(ref, attribute) if ref else None, vs=vs if ref else "",
            target=P50_TARGET if key == "sdk_sdk" and name == "p50" else None))


def _explain(ctx: BenchContext, s: dict[str, LatencySummary]) -> None:
    """Say which cost dominates the SDK round trip, from the differences between pairings."""
    if not {"sdk_sdk", "sdk_raw", "newtls_raw", "keepalive_raw"} <= s.keys():
        return
    total = s["sdk_sdk"].p50_ms
    device_sdk = s["sdk_sdk"].p50_ms - s["sdk_raw"].p50_ms
    service_sdk = s["sdk_raw"].p50_ms - s["newtls_raw"].p50_ms
    tls_setup = s["newtls_raw"].p50_ms - s["keepalive_raw"].p50_ms
    emulator = s["keepalive_raw"].p50_ms
    parts = {"the service SDK's own Python (msrest/requests) beyond TLS": service_sdk,
             "a new TCP+TLS connection per request (the SDK opens one per call)": tls_setup,
             "the device SDK (paho thread + handler dispatch)": device_sdk,
             "emulator + loopback + raw clients": emulator}
    largest = max(parts, key=lambda k: parts[k])
    breakdown = "; ".join(f"{name} {value:.2f} ms" for name, value in parts.items())
    ctx.results.note(f"Round trip with the real SDKs, p50 {total:.2f} ms, splits (p50 differences) into: "
                     f"{breakdown}. Largest: {largest}.")
    ctx.results.details["roundtrip_breakdown_ms"] = {k: round(v, 3) for k, v in parts.items()}


class _sdk_device:
    """The azure-iot-device client in its own process, connected to the hub."""

    def __init__(self, ctx: BenchContext, hub: HubInfo):
        secret_env = {"BENCH_DEVICE_CONNECTION_STRING": hub.device_connection_string(SDK_DEVICE)}
        self._child = Child("roundtrip-sdk-device", python_module("bench.sdk_device", "--ca", hub.ca_file),
                            ctx.log_dir, env=secret_env)

    def __enter__(self) -> Child:
        try:
            self._child.expect("connected", 60)
        except BaseException:
            self._child.stop()
            raise
        return self._child

    def __exit__(self, *exc: object) -> None:
        self._child.stop()
