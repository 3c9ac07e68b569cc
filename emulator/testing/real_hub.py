"""RealHub: the same handle as Emulator, on a real Azure IoT hub (through the service SDK).

So one test suite runs against the emulator locally and against Azure when asked. What needs the
emulator's inside (telemetry read back, who is connected) is not available here: reading telemetry from
a real hub needs an Event Hubs consumer on its built-in endpoint, which this package does not bundle.
"""

from __future__ import annotations

from typing import Any

from hubsettings import parse_connection_string, wellknown

from ..hub import MethodResult
from .identity import DeviceIdentity, new_device_id, new_key


class NotAvailableOnRealHub(RuntimeError):
    """The call looks inside the emulator; a real hub offers no such view."""


class RealHub:
    """A handle on a real IoT hub, from a service connection string with registry write rights."""

    ca_file: str | None = None  # public CAs: the SDKs' default trust
    ca_pem: str | None = None

    def __init__(self, service_connection_string: str, event_hub_connection_string: str | None = None):
        self._parsed = parse_connection_string(service_connection_string, expect="service",
                                               what="the real hub's connection string")
        self.service_connection_string = self._parsed.raw
        self.event_hub_connection_string = event_hub_connection_string
        self._registry: Any = None

    @property
    def host_name(self) -> str:
        return self._parsed.host

    @property
    def registry(self) -> Any:
        """The service SDK's IoTHubRegistryManager (created at first use)."""
        if self._registry is None:
            from azure.iot.hub import IoTHubRegistryManager
            self._registry = IoTHubRegistryManager.from_connection_string(self.service_connection_string)
        return self._registry

    def start(self) -> RealHub:
        return self

    def stop(self) -> None:
        self._registry = None

    def __enter__(self) -> RealHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def device_connection_string(self, device_id: str, key: str) -> str:
        return wellknown.device_connection_string(self.host_name, device_id, key)

    def create_device(self, device_id: str | None = None, *, primary_key: str | None = None,
                      status: str = "enabled") -> DeviceIdentity:
        device_id = device_id or new_device_id()
        key = primary_key or new_key()
        self.registry.create_device_with_sas(device_id, key, new_key(), status)
        return DeviceIdentity(device_id, key, self.device_connection_string(device_id, key))

    def delete_device(self, device_id: str) -> None:
        from msrest.exceptions import HttpOperationError
        try:
            self.registry.delete_device(device_id, etag="*")
        except HttpOperationError as e:
            if getattr(e.response, "status_code", None) != 404:
                raise

    def invoke_method(self, device_id: str, method_name: str, payload: Any = None, *,
                      response_timeout: float = 30, connect_timeout: float = 0) -> MethodResult:
        from azure.iot.hub.models import CloudToDeviceMethod
        request = CloudToDeviceMethod(method_name=method_name, payload=payload,
                                      response_timeout_in_seconds=int(response_timeout),
                                      connect_timeout_in_seconds=int(connect_timeout))
        connection = self.registry.protocol.config.connection
        connection.timeout = max(connection.timeout or 0, response_timeout + connect_timeout + 15)
        result = self.registry.invoke_device_method(device_id, request)
        return MethodResult(result.status, result.payload)

    async def invoke_method_async(self, device_id: str, method_name: str, payload: Any = None, *,
                                  response_timeout: float = 30, connect_timeout: float = 0) -> MethodResult:
        import asyncio
        return await asyncio.get_running_loop().run_in_executor(None, lambda: self.invoke_method(
            device_id, method_name, payload, response_timeout=response_timeout, connect_timeout=connect_timeout))

    def get_twin(self, device_id: str) -> dict[str, Any]:
        return self.registry.get_twin(device_id).as_dict()

    def is_connected(self, device_id: str) -> bool:
        return self.registry.get_device(device_id).connection_state == "Connected"

    def telemetry(self, *args: Any, **kwargs: Any) -> Any:
        raise NotAvailableOnRealHub(
            "telemetry() reads the emulator's buffer; on a real hub read the built-in Event Hubs endpoint "
            "(azure-eventhub, with the hub's Event Hubs-compatible connection string) instead")

    wait_for_telemetry = telemetry
    wait_for_telemetry_async = telemetry

    def __repr__(self) -> str:
        return f"<RealHub {self.host_name}>"
