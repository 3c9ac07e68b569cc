"""JSON text as the emulator writes it: compact (IoT Hub's own bodies carry no spaces).

One encoder for the whole process: json.dumps(value, separators=...) builds a new encoder on every
call, which the hot paths (every method call, every saved job row) would pay each time."""

from __future__ import annotations

import json

compact_json = json.JSONEncoder(separators=(",", ":")).encode
