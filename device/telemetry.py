"""Simulated sensor readings (temperature, humidity) and their JSON message body."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"


@dataclass
class SensorSimulator:
    """A slow random walk around a room's climate, so charts look like a real sensor."""
    rng: random.Random
    temperature: float = 21.0
    humidity: float = 45.0

    def read(self) -> dict[str, float]:
        self.temperature = min(35.0, max(10.0, self.temperature + self.rng.uniform(-0.5, 0.5)))
        self.humidity = min(90.0, max(20.0, self.humidity + self.rng.uniform(-1.0, 1.0)))
        return {"temperature": round(self.temperature, 2), "humidity": round(self.humidity, 2)}


def encode_reading(reading: dict[str, float]) -> str:
    """The message body; sent with content type application/json and encoding utf-8 so that
    IoT Hub routing queries and IoT Central can read the fields."""
    return json.dumps(reading, separators=(",", ":"))
