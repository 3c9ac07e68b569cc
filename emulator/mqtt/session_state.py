"""Per-client MQTT session state that outlives a connection: one ``SessionState`` per client id.

A persistent (clean_session=0) session keeps its subscriptions (on record only), its outbound QoS 1
publishes not yet PUBACKed (resent with DUP=1 by ``ServerConnection.accept()`` on the next
connection), its next outbound packet id and the last ``DUPLICATE_WINDOW`` inbound QoS 1 packet ids
(DUP detection across reconnects). ``ServerConnection`` (session.py) reads and updates it; the device
front keeps one per client id between connections.

Additions to docs/emulator-internals.md: ``inflight`` (packet id -> Publish), ``clear()``,
``allocate_packet_id()``, ``note_inbound()`` and ``DUPLICATE_WINDOW``; the contract names only
``client_id`` and ``subscriptions``.
"""

from __future__ import annotations

from .packets import Publish

__all__ = ["SessionState"]

_MAX_PACKET_ID = 0xFFFF


class SessionState:
    """What a persistent (clean_session=0) session remembers between connections of one client id."""

    # Inbound QoS 1 packet ids remembered for DUP detection. A client resends only what it had in
    # flight when the connection broke (paho: 20 at most by default), so this is generous while
    # keeping 10,000 idle sessions small.
    DUPLICATE_WINDOW = 128

    __slots__ = ("client_id", "subscriptions", "inflight", "_next_packet_id", "_recent_inbound")

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        # On record only: delivery does NOT depend on it (see the wire facts).
        self.subscriptions: dict[str, int] = {}
        # Outbound QoS 1 publishes not yet PUBACKed, by packet id, in the order they were sent.
        self.inflight: dict[int, Publish] = {}
        self._next_packet_id = 1
        self._recent_inbound: dict[int, None] = {}

    def clear(self) -> None:
        """Forget everything, as a clean_session=1 CONNECT requires."""
        self.subscriptions.clear()
        self.inflight.clear()
        self._recent_inbound.clear()
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

    def note_inbound(self, packet_id: int, dup: bool) -> bool:
        """Record an inbound QoS 1 packet id; True if it is a DUP resend of one already received."""
        recent = self._recent_inbound
        if packet_id in recent:
            if dup:
                return True
            del recent[packet_id]  # the client reused the id for a new message: move it to the end
        recent[packet_id] = None
        if len(recent) > self.DUPLICATE_WINDOW:
            del recent[next(iter(recent))]
        return False

    def __repr__(self) -> str:
        return (f"SessionState({self.client_id!r}, subscriptions={len(self.subscriptions)}, "
                f"inflight={len(self.inflight)})")
