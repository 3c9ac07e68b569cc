"""The hub as the job scheduler's `JobTarget` (emulator/hub/jobs.py): devices to select, methods and
twin updates to apply. The hub builds its own scheduler over it (`Hub.jobs`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .query import Condition

if TYPE_CHECKING:
    from .hub import Hub


class HubJobTarget:
    def __init__(self, hub: Hub):
        self.hub = hub

    async def select_devices(self, condition: Condition) -> list[str]:
        return [twin["deviceId"] for twin in await self.hub.views.select(condition)]

    async def invoke_method(self, device_id: str, method_name: str, payload: Any, response_timeout: int,
                            connect_timeout: int) -> tuple[int, Any]:
        result = await self.hub.invoke_method(device_id, method_name, payload, response_timeout=response_timeout,
                                              connect_timeout=connect_timeout)
        return result.status, result.payload

    def update_twin(self, device_id: str, patch: dict) -> None:
        # A job's updateTwin carries "etag": "*" (any version): the job applies to whatever twin is current.
        self.hub.update_twin(device_id, {k: v for k, v in patch.items() if k != "etag"})
