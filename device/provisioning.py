"""DPS registration (symmetric key; a group enrollment's per-device key is derived by hubsettings)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from azure.iot.device import exceptions as sdk_errors

from hubsettings import ProvisioningSettings

from .connecting import Backoff, with_backoff
from .errors import ProvisioningFailed
from .sdk import ClientFactory, HubIdentity, describe_error


async def provision(settings: ProvisioningSettings, ca_pem: str | None, factory: ClientFactory, *,
                    backoff: Backoff, say: Callable[[str], None], hint: str = "",
                    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                    clock: Callable[[], float] = time.monotonic) -> HubIdentity:
    """Register with DPS (retrying while it cannot be reached) and return the assigned hub identity."""

    async def register_once() -> Any:
        client = factory.provisioning_client(settings, ca_pem)  # a fresh client per attempt
        try:
            return await client.register()
        except sdk_errors.ServiceError as e:
            raise ProvisioningFailed(
                f"DPS {settings.host} refused registration {settings.registration_id}: "
                f"{describe_error(e)}") from None

    result = await with_backoff(register_once, what="provisioning", target=f"DPS {settings.host}",
                                backoff=backoff, say=say, hint=hint, sleep=sleep, clock=clock)
    return identity_from_registration(result, settings)


def identity_from_registration(result: Any, settings: ProvisioningSettings) -> HubIdentity:
    """The hub and device id DPS assigned; anything but "assigned" is a provisioning failure."""
    status = getattr(result, "status", None)
    state = getattr(result, "registration_state", None)
    hub = getattr(state, "assigned_hub", None)
    if status != "assigned" or not hub:
        substatus = getattr(state, "sub_status", None)
        more = f", substatus {substatus}" if substatus else ""
        raise ProvisioningFailed(
            f"DPS {settings.host} did not assign registration {settings.registration_id} to a hub "
            f"(status {status!r}{more}): check the enrollment in id scope {settings.id_scope}")
    device_id = getattr(state, "device_id", None) or settings.registration_id
    return HubIdentity(host_name=hub, device_id=device_id, symmetric_key=settings.symmetric_key)
