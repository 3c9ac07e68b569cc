"""Service-side authorisation: the `Authorization: SharedAccessSignature ...` header of every request.

The hub model checks the token (policy key, expiry, `sr` naming this hub with or without the port);
this module decides which rights a route needs, as IoT Hub's permission table says:

- identities: RegistryRead to read, RegistryWrite to create, change or delete (write implies read,
  as the portal ticks both);
- twins: ServiceConnect (back-end apps "update tags and desired properties, retrieve reported
  properties, and run queries") or the registry rights;
- queries: RegistryRead (the device-twin tutorial's policy) or ServiceConnect;
- direct methods: ServiceConnect only;
- jobs: ServiceConnect, or RegistryRead/RegistryWrite as the schedule-jobs tutorial's
  `registryReadWrite` policy uses;
- received telemetry (emulator-only route): ServiceConnect, as IoT Hub's events endpoint.

A device key (sr = host/devices/id, no skn) names no policy and so can call none of these.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from ..hub import Hub
from ..hub.errors import IotHubUnauthorizedAccess

REGISTRY_READ = ("RegistryRead", "RegistryWrite")
REGISTRY_WRITE = ("RegistryWrite",)
TWIN_READ = ("ServiceConnect", "RegistryRead", "RegistryWrite")
TWIN_WRITE = ("ServiceConnect", "RegistryWrite")
QUERY = ("RegistryRead", "RegistryWrite", "ServiceConnect")
METHODS = ("ServiceConnect",)
JOBS_READ = ("ServiceConnect", "RegistryRead", "RegistryWrite")
JOBS_WRITE = ("ServiceConnect", "RegistryWrite")
TELEMETRY = ("ServiceConnect",)  # the emulator-only telemetry route, like IoT Hub's events endpoint

_CACHE_SIZE = 256


class ServiceAuthorizer:
    """Checks tokens against the hub's policies; remembers recently verified tokens.

    The SDK rebuilds its token per request but keeps the same expiry for a while, so a small cache
    saves the HMAC on most requests. A cached token is still re-checked for expiry and rights.
    """

    def __init__(self, hub: Hub):
        self._hub = hub
        self._verified: OrderedDict[str, tuple[str, int]] = OrderedDict()  # token -> (policy, expiry)

    def authorize(self, header: str | None, accepted_rights: Sequence[str]) -> str:
        """The policy name, or IotHubUnauthorizedAccess (401) when the header does not grant any of
        `accepted_rights`."""
        if not header:
            raise IotHubUnauthorizedAccess("The request has no Authorization header")
        cached = self._verified.get(header)
        if cached is not None:
            policy_name, expiry = cached
            if expiry > self._hub.now():
                rights = self._hub.policies.get(policy_name, ("", ()))[1]
                if any(right in rights for right in accepted_rights):
                    self._verified.move_to_end(header)
                    return policy_name
            self._verified.pop(header, None)  # expired or not enough: the hub says why below
        policy_name = self._hub.authenticate_service(header, accepted_rights)
        self._remember(header, policy_name)
        return policy_name

    def _remember(self, header: str, policy_name: str) -> None:
        expiry = _expiry(header)
        if expiry is None:
            return
        self._verified[header] = (policy_name, expiry)
        while len(self._verified) > _CACHE_SIZE:
            self._verified.popitem(last=False)


def _fields(header: str) -> dict[str, str]:
    _, _, rest = header.partition(" ")
    return dict(part.partition("=")[::2] for part in rest.split("&"))


def _expiry(header: str) -> int | None:
    try:
        return int(_fields(header).get("se", ""))
    except ValueError:
        return None
