"""Service-side authorisation: the `Authorization: SharedAccessSignature ...` header of every request.

The hub checks the token (policy key, expiry, `sr` naming this hub with or without the port, the
rights); this module decides which rights a route accepts, as IoT Hub's permission table says:

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


class ServiceAuthorizer:
    """The `Authorization` header of a request -> the hub's check of its token against the rights
    the route accepts (the hub remembers recently verified tokens)."""

    def __init__(self, hub: Hub):
        self._hub = hub

    def authorize(self, header: str | None, accepted_rights: Sequence[str]) -> str:
        """The policy name, or IotHubUnauthorizedAccess (401) when the header does not grant any of
        `accepted_rights`."""
        if not header:
            raise IotHubUnauthorizedAccess("The request has no Authorization header")
        return self._hub.authenticate_service(header, accepted_rights)
