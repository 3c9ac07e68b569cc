"""Per-client MQTT session state that outlives a connection: one ``SessionState`` per client id.

A persistent (clean_session=0) session keeps its subscriptions (what the hub delivers by), its
outbound QoS 1 publishes not yet PUBACKed (resent with DUP=1 by ``ServerConnection.accept()`` on the
next connection) and its next outbound packet id. ``ServerConnection`` (session.py) reads and updates
it; the device front keeps one per client id between connections and persists the subscriptions.

Inbound packet ids are deliberately not remembered: once PUBACK is sent the id is free again
[MQTT-4.3.2-2], and a new client object restarts its ids at 1 while the session persists, so a
PUBLISH with an id seen before (DUP or not) is processed as the message it is.

Additions to docs/emulator-internals.md: ``inflight`` (packet id -> Publish), ``clear()`` and
``allocate_packet_id()``; the contract names only ``client_id`` and ``subscriptions``.
"""

from __future__ import annotations

from mqttcodec.packets import Publish

__all__ = ["SessionState"]

_MAX_PACKET_ID = 0xFFFF


class SessionState:
    """What a persistent (clean_session=0) session remembers between connections of one client id."""

    __slots__ = ("client_id", "subscriptions", "inflight", "_next_packet_id")

    def __init__(self, client_id: str, subscriptions: dict[str, int] | None = None) -> None:
        self.client_id = client_id
        # Topic filter -> granted QoS: device-bound traffic goes only to a matching subscription.
        self.subscriptions: dict[str, int] = dict(subscriptions or {})
        # Outbound QoS 1 publishes not yet PUBACKed, by packet id, in the order they were sent.
        self.inflight: dict[int, Publish] = {}
        self._next_packet_id = 1

    def clear(self) -> None:
        """Forget everything, as a clean_session=1 CONNECT requires."""
        self.subscriptions.clear()
        self.inflight.clear()
        self._next_packet_id = 1

    def allocate_packet_id(self) -> int:
        """The next free outbound packet id (1..65535, wrapping, skipping ids still in flight)."""
        if len(self.inflight) >= _MAX_PACKET_ID:
            raise RuntimeError(f"{self.client_id!r} has 65535 unacknowledged publishes: no packet id left")
        packet_id = self._next_packet_id
        while packet_id in self.inflight:
            packet_id = packet_id % _MAX_PACKET_ID + 1
        self._next_packet_id = packet_id % _MAX_PACKET_ID + 1
        return packet_id

    def __repr__(self) -> str:
        return (f"SessionState({self.client_id!r}, subscriptions={len(self.subscriptions)}, "
                f"inflight={len(self.inflight)})")
