"""DPS registration (symmetric key; a group enrollment's per-device key is derived by hubsettings)."""

from __future__ import annotations

import asyncio
import re
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
        except sdk_errors.ClientError as e:
            status = refused_status(e)
            if status is None:
                raise
            raise ProvisioningFailed(refusal_message(settings, status)) from None

    result = await with_backoff(register_once, what="provisioning", target=f"DPS {settings.host}",
                                backoff=backoff, say=say, hint=hint, sleep=sleep, clock=clock)
    return identity_from_registration(result, settings)


_STATUS = re.compile(r"service error status code (\d{3})")


def refused_status(error: BaseException) -> int | None:
    """The HTTP status of a DPS answer that another attempt cannot change (4xx but 429), found in the
    SDK's exception chain; None for anything worth retrying."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        match = _STATUS.search(str(current))
        if match:
            status = int(match.group(1))
            return status if 400 <= status < 500 and status != 429 else None
        current = current.__cause__ or current.__context__
    return None


def refusal_message(settings: ProvisioningSettings, status: int) -> str:
    message = f"DPS {settings.host} refused registration {settings.registration_id} (status {status})"
    if status == 409:
        return (f"{message}: a device {settings.registration_id} is already registered in the hub with other "
                f"keys, and DPS does not re-key a device it did not provision. Use its own connection string: "
                f"`iothub-service device connection-string {settings.registration_id} --show-key`, passed as "
                "--connection-string")
    return f"{message}: check the id scope, the registration id and the enrollment"


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
