"""What every client of one fleet shares: TLS contexts, the doors (gates) to the hub and to DPS,
retry timing, token lifetime and the counters."""

from __future__ import annotations

import random
import ssl
from dataclasses import dataclass, field

from .mqtt import client_ssl_context
from .pacing import Gate, Retry
from .stats import FleetStats

MQTT_TLS_PORT = 8883  # IoT Hub and DPS both take MQTT over TLS here
TOKEN_TTL_SECONDS = 3600  # as the SDK: renewed RENEW_BEFORE_SECONDS before it expires
RENEW_BEFORE_SECONDS = 120
KEEPALIVE_SECONDS = 300  # IoT Hub allows up to 1177 s; fewer pings per device than the SDK's 60 s
HANDSHAKE_TIMEOUT = 30.0  # TCP + TLS + CONNECT/CONNACK + SUBSCRIBE/SUBACK of one attempt


@dataclass
class FleetLink:
    hub_gate: Gate
    dps_gate: Gate
    stats: FleetStats = field(default_factory=FleetStats)
    retry: Retry = field(default_factory=Retry)
    token_ttl: int = TOKEN_TTL_SECONDS
    renew_before: int = RENEW_BEFORE_SECONDS
    keepalive: int = KEEPALIVE_SECONDS
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    port: int = MQTT_TLS_PORT
    rng: random.Random = field(default_factory=random.Random)
    _contexts: dict[str | None, ssl.SSLContext] = field(default_factory=dict)

    def ssl_context(self, ca_pem: str | None) -> ssl.SSLContext:
        """One TLS context per CA for the whole fleet (each holds the parsed trust store)."""
        context = self._contexts.get(ca_pem)
        if context is None:
            context = self._contexts[ca_pem] = client_ssl_context(ca_pem)
        return context
