"""A fake JobTarget (twins + scripted devices) and a clock that only moves when told."""

from __future__ import annotations

import asyncio
from typing import Any

from emulator.hub.query import Condition


class FakeHubError(Exception):
    """Shaped like the hub model's errors: an IoT Hub error name and code."""

    def __init__(self, error_name: str, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_name, self.error_code, self.message = error_name, error_code, message


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:  # 2023-11-14T22:13:20Z
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def twin(device_id: str, **tags: Any) -> dict:
    return {"deviceId": device_id, "status": "enabled", "tags": tags,
            "properties": {"desired": {"$version": 1}, "reported": {"$version": 1}}}


class FakeTarget:
    """Devices answer methods with 200 and an echo; `offline` ones raise DeviceNotOnline.
    Close `gate` to hold every method call in flight until the test opens it."""

    def __init__(self, twins: list[dict], offline: tuple[str, ...] = ()) -> None:
        self.twins = twins
        self.offline = set(offline)
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls: list[tuple] = []
        self.patches: list[tuple[str, dict]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.cancelled_calls = 0
        self.twin_failures: dict[str, Exception] = {}

    async def select_devices(self, condition: Condition) -> list[str]:
        return [t["deviceId"] for t in self.twins if condition.matches(t)]

    async def invoke_method(self, device_id: str, method_name: str, payload: Any,
                            response_timeout: int, connect_timeout: int) -> tuple[int, Any]:
        self.calls.append((device_id, method_name, payload, response_timeout, connect_timeout))
        if device_id in self.offline:
            raise FakeHubError("DeviceNotOnline", 404103, f"Device {device_id} is not online")
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled_calls += 1
            raise
        finally:
            self.in_flight -= 1
        return 200, {"device": device_id, "received": payload}

    def update_twin(self, device_id: str, patch: dict) -> None:
        if device_id in self.twin_failures:
            raise self.twin_failures[device_id]
        self.patches.append((device_id, patch))


async def settle(rounds: int = 20) -> None:
    """Let scheduled tasks run their next steps (no time passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
