"""The results: figures side by side with the mosquitto reference and the targets, as a text table,
markdown (README-ready) and JSON. Pure formatting apart from `write_results`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .stats import ratio


@dataclass(frozen=True)
class Target:
    """A benchmark target: `value <op> threshold`, op '<=' (lower is better) or '>=' (higher is better)."""

    op: str
    threshold: float
    unit: str

    def met_by(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value <= self.threshold if self.op == "<=" else value >= self.threshold

    def __str__(self) -> str:
        return f"{self.op} {_number(self.threshold)} {self.unit}".strip()


#: What a reference figure measured, by the key a Figure names in `vs`: every ratio compares one pattern.
REFERENCES = {
    "pub-sub": "mosquitto, the same raw devices publishing the same messages QoS 1 over TLS to a broker, one MQTT "
               "subscriber reading them all (the emulator's side: devices -> PUBACK after a durable write -> "
               "the Event Hubs-compatible endpoint -> one azure-eventhub consumer).",
    "mqtt-rr": "mosquitto, MQTT request/response: a long-lived requester client publishes the request QoS 1, "
               "the same raw device program answers QoS 1, the requester collects it (two MQTT hops each way "
               "through the broker; the emulator's direct method is HTTPS in, MQTT out).",
    "https-bridge": "the same HTTPS client and request (POST /twins/{id}/methods, keep-alive) to an aiohttp "
                    "bridge that forwards it over one long-lived MQTT connection to mosquitto at QoS 1, to the "
                    "same raw device, and answers with the device's response (bench/reference_bridge.py): "
                    "the emulator's two hops built from reference parts, with no registry, SAS check or store.",
    "https-bridge-new-tls": "as https-bridge, with the same client opening a new TCP+TLS connection per call.",
    "https-bridge-sdk": "as https-bridge, called by the same azure-iot-hub SDK client (a new connection per call).",
    "broadcast": "mosquitto fan-out: ONE request published QoS 1 to a topic all N connected raw devices "
                 "subscribe to; each answers QoS 1; time until the requester has collected all N answers.",
    "per-device": "mosquitto fan-out to N of the connected raw devices: N QoS 1 requests, one per device, "
                  "from one requester; time until it has collected all N answers.",
    "tls-conns": "mosquitto holding the same number of TLS connections from the same raw client program.",
}


@dataclass
class Figure:
    """One measured number. `reference` is the figure for the same pattern built from reference parts
    (mosquitto, or aiohttp + mosquitto); `vs` says which (a key of REFERENCES)."""

    section: str
    name: str
    value: float | None
    unit: str
    reference: float | None = None
    target: Target | None = None
    note: str = ""
    vs: str = ""

    @property
    def ratio(self) -> float | None:
        return ratio(self.value, self.reference)

    @property
    def met(self) -> bool | None:
        return self.target.met_by(self.value) if self.target else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = str(self.target) if self.target else None
        data["ratio"] = _rounded(self.ratio)
        data["met"] = self.met
        data["value"] = _rounded(self.value)
        data["reference"] = _rounded(self.reference)
        return data


@dataclass
class Results:
    machine: dict[str, Any]
    mode: str
    started_utc: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # skipped parts, failures, what dominates
    setup: list[str] = field(default_factory=list)  # how the emulator and the devices ran
    details: dict[str, Any] = field(default_factory=dict)  # raw summaries per benchmark
    duration_s: float | None = None

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def note(self, text: str) -> None:
        self.notes.append(text)

    def to_json(self) -> dict[str, Any]:
        return {"machine": self.machine, "mode": self.mode, "started_utc": self.started_utc,
                "duration_s": _rounded(self.duration_s), "setup": list(self.setup),
                "references": dict(REFERENCES), "figures": [f.to_json() for f in self.figures],
                "notes": list(self.notes), "details": self.details}


def _rounded(value: float | None) -> float | None:
    if value is None:
        return None
    return round(value, 4 if abs(value) < 10 else 2)


def _number(value: float | None) -> str:
    """Three significant figures for small numbers, thousands separators for big ones."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _met_text(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: ""}[met]


HEADERS = ("measurement", "ours", "reference", "ratio", "target", "met")


def _rows(figures: list[Figure]) -> list[tuple[str, ...]]:
    """One row per figure, grouped by section number (stable: measurement order within a section)."""
    rows = []
    for f in sorted(figures, key=lambda figure: figure.section):
        unit = f" {f.unit}" if f.unit else ""
        rows.append((f"{f.section}: {f.name}", f"{_number(f.value)}{unit}",
                     f"{_number(f.reference)}{unit}" + (f" [{f.vs}]" if f.vs else "") if f.reference is not None else "-",
                     _ratio_text(f.ratio), str(f.target) if f.target else "", _met_text(f.met)))
    return rows


def text_table(figures: list[Figure]) -> str:
    """A fixed-width table for the terminal."""
    rows = [HEADERS, *_rows(figures)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(results: Results) -> str:
    """The README section: machine, table, notes."""
    m = results.machine
    lines = [
        "## Performance (measured by `make bench`)",
        "",
        f"Machine: {m.get('cpu_model', '?')}, {m.get('cpu_count', '?')} cores, "
        f"{m.get('ram_gib', '?')} GiB RAM, {m.get('os', '?')}, Python {m.get('python', '?')}"
        + (f", mosquitto {m['mosquitto']}" if m.get("mosquitto") else "") + ".",
        f"Run: {results.started_utc}, mode {results.mode}, {_number(results.duration_s)} s"
        + (f", load average (1/5/15 min) {m['load_average']} at the start" if m.get("load_average") else "")
        + (f", {m['load_average_end']} at the end" if m.get("load_average_end") else "") + ". Everything on loopback; "
        "the ratio is ours / reference, where the reference is the same pattern built from reference parts "
        "(the key in brackets, explained under the table).",
        "",
        *[f"- {_md_escape(line)}" for line in results.setup],
        *([""] if results.setup else []),
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join(["---"] + ["---:"] * 3 + ["---", "---"]) + "|",
    ]
    for row in _rows(results.figures):
        lines.append("| " + " | ".join(_md_escape(cell) for cell in row) + " |")
    used = sorted({f.vs for f in results.figures if f.vs and f.reference is not None})
    if used:
        lines += ["", "References (what the other side did):", ""]
        lines += [f"- [{key}] {_md_escape(REFERENCES.get(key, key))}" for key in used]
    if results.notes:
        lines += ["", "Notes:", ""]
        lines += [f"- {_md_escape(note)}" for note in results.notes]
    return "\n".join(lines) + "\n"


def write_results(results: Results, directory: Path) -> tuple[Path, Path]:
    """latest.json and latest.md in `directory` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "latest.json", directory / "latest.md"
    json_path.write_text(json.dumps(results.to_json(), indent=2) + "\n")
    md_path.write_text(markdown(results))
    return json_path, md_path
