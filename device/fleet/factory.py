"""The fleet engine behind device.sdk.ClientFactory: the listener's DeviceAgent runs on it unchanged."""

from __future__ import annotations

from hubsettings import ProvisioningSettings

from ..sdk import HubIdentity
from .dps_client import ProvisioningClient
from .hub_client import HubClient
from .link import FleetLink


class FleetClientFactory:
    """Clients that share one FleetLink (TLS contexts, gates, counters)."""

    def __init__(self, link: FleetLink):
        self.link = link

    def hub_client(self, identity: HubIdentity, ca_pem: str | None) -> HubClient:
        return HubClient(identity, ca_pem, self.link)

    def provisioning_client(self, settings: ProvisioningSettings, ca_pem: str | None) -> ProvisioningClient:
        return ProvisioningClient(settings, ca_pem, self.link)
