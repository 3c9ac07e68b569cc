"""The machine the figures come from: CPU model, cores, RAM, OS, Python and SDK versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any


def cpu_model(cpuinfo: str | None = None) -> str:
    """`model name` from /proc/cpuinfo (Linux), else what platform knows."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def ram_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def describe() -> dict[str, Any]:
    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "ram_gib": ram_gib(),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "azure-iot-device": _version("azure-iot-device"), "azure-iot-hub": _version("azure-iot-hub"),
            "aiohttp": _version("aiohttp"), "load_average": load_average()}


def load_average() -> str | None:
    """1, 5 and 15-minute load averages: how busy the machine was (other work shares its cores)."""
    try:
        return " / ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return None
