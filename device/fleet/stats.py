"""What a fleet has done so far: counted by the engine's clients, read by the progress line and the
summary at exit."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class FleetStats:
    connected: int = 0  # hub connections open right now
    reconnecting: int = 0  # devices that lost their connection and are coming back
    registrations: int = 0  # DPS registrations completed
    methods_answered: int = 0  # method responses the hub acknowledged
    desired_patches: int = 0  # desired-property patches received (each is acknowledged by a reported patch)
    reported_patches: int = 0  # reported-property patches the hub accepted
    telemetry_sent: int = 0  # telemetry messages the hub acknowledged
    c2d_received: int = 0  # cloud-to-device messages received
    reconnects: int = 0  # connections re-established after a loss
    throttled: int = 0  # refusals that asked us to slow down (429, CONNACK 3)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def summary_line(stats: FleetStats, devices: int) -> str:
    return (f"Summary: {devices:,} devices; methods answered {stats.methods_answered:,}, desired patches "
            f"acknowledged {stats.desired_patches:,}, reported patches {stats.reported_patches:,}, "
            f"telemetry sent {stats.telemetry_sent:,}, C2D messages {stats.c2d_received:,}, "
            f"reconnects {stats.reconnects:,}")
