"""The only module that builds azure-iot-device clients; tests inject a fake ClientFactory instead.

It also sorts the SDK's exceptions into what the listener does about them: give up at once
(credentials refused), try again (the hub cannot be reached yet), or report a failed provisioning.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from azure.iot.device import exceptions as sdk_errors
from azure.iot.device.aio import IoTHubDeviceClient, ProvisioningDeviceClient
from azure.iot.device.common import transport_exceptions

from hubsettings import ProvisioningSettings

from .errors import SettingsProblem

T = TypeVar("T")


@dataclass(frozen=True)
class HubIdentity:
    """How a device authenticates to its hub: a connection string, or a key from provisioning."""
    host_name: str
    device_id: str
    connection_string: str | None = None  # the raw string; never printed
    symmetric_key: str | None = None


class DeviceClient(Protocol):
    """The part of azure.iot.device.aio.IoTHubDeviceClient the listener uses."""
    connected: bool
    on_method_request_received: Any
    on_twin_desired_properties_patch_received: Any
    on_message_received: Any
    on_connection_state_change: Any
    on_background_exception: Any

    async def connect(self) -> None: ...
    async def shutdown(self) -> None: ...
    async def send_method_response(self, method_response: Any) -> None: ...
    async def patch_twin_reported_properties(self, reported_properties_patch: dict) -> None: ...
    async def get_twin(self) -> dict: ...
    async def send_message(self, message: Any) -> None: ...


class ProvisioningClient(Protocol):
    async def register(self) -> Any: ...


class ClientFactory(Protocol):
    def hub_client(self, identity: HubIdentity, ca_pem: str | None) -> DeviceClient: ...
    def provisioning_client(self, settings: ProvisioningSettings, ca_pem: str | None) -> ProvisioningClient: ...


class SdkClientFactory:
    """Builds the real asyncio SDK clients."""

    def hub_client(self, identity: HubIdentity, ca_pem: str | None) -> DeviceClient:
        # ensure_desired_properties=False: the listener reads the twin itself after every
        # (re)connect and acknowledges only what changed; the SDK's own re-read would hand the
        # whole desired document over as a patch and make it re-acknowledge everything.
        options: dict[str, Any] = {"ensure_desired_properties": False}
        if ca_pem:
            options["server_verification_cert"] = ca_pem
        if identity.connection_string:
            return _checked_ca(lambda: IoTHubDeviceClient.create_from_connection_string(
                identity.connection_string, **options))
        return _checked_ca(lambda: IoTHubDeviceClient.create_from_symmetric_key(
            symmetric_key=identity.symmetric_key, hostname=identity.host_name,
            device_id=identity.device_id, **options))

    def provisioning_client(self, settings: ProvisioningSettings, ca_pem: str | None) -> ProvisioningClient:
        options: dict[str, Any] = {}
        if ca_pem:
            options["server_verification_cert"] = ca_pem
        return _checked_ca(lambda: ProvisioningDeviceClient.create_from_symmetric_key(
            provisioning_host=settings.host, registration_id=settings.registration_id,
            id_scope=settings.id_scope, symmetric_key=settings.symmetric_key, **options))


def _checked_ca(create: Callable[[], T]) -> T:
    """The SDK loads the CA when the client is built: a damaged PEM is a settings problem."""
    try:
        return create()
    except ssl.SSLError as e:
        raise SettingsProblem(f"the CA certificate (IOTHUB_CA_FILE) cannot be used: {e.reason or e}") from None


def is_credential_error(error: BaseException) -> bool:
    """Wrong key, unknown or disabled device: trying again will not help."""
    return isinstance(error, sdk_errors.CredentialError)


def refuses_credentials(error: BaseException) -> bool:
    """A background error saying the hub refused the device's credentials on a reconnect (CONNACK
    "not authorised": deleted, disabled or re-keyed). The SDK reports these unconverted, and its
    reconnect loop gives up on them for good, so the listener must say so."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (transport_exceptions.UnauthorizedError, sdk_errors.CredentialError)):
            return True
        current = current.__cause__ or current.__context__
    return False


def is_transient(error: BaseException) -> bool:
    """The hub (or DPS) could not be reached, dropped us or did not answer in time: worth another
    try. Any other SDK client error is retried too (bounded by the timeout); credentials are not."""
    if is_credential_error(error):
        return False
    return isinstance(error, (sdk_errors.ClientError, sdk_errors.OperationTimeout,
                              sdk_errors.OperationCancelled, TimeoutError, OSError))


def describe_error(error: BaseException) -> str:
    """A short reason from an SDK exception chain, e.g. '[Errno 111] Connection refused'.

    The SDK wraps the interesting error (socket, TLS, DNS) a few levels deep; the innermost one with
    a message says the most.
    """
    reasons: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).strip()
        if text and text not in reasons:
            reasons.append(text)
        current = current.__cause__ or current.__context__
    if not reasons:
        return type(error).__name__
    innermost = reasons[-1]
    return innermost if len(innermost) <= 200 else innermost[:200] + "…"
