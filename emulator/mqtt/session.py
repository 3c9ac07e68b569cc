"""The server side of one MQTT 3.1.1 connection as a state machine with no I/O (h11-style).

Bytes go in through ``receive_data()``, decisions come from the application (``accept``, ``refuse``,
``publish``, ``close``), and everything to write comes out of ``data_to_send()``. Time is read only
through the injected ``now`` clock, so keepalive is testable without sleeping.

How a server drives it (emulator/mqtt/server.py)::

    events = conn.receive_data(data)      # never raises; bad bytes -> ConnectionLost(clean=False)
    ...handle events: ConnectRequested -> conn.accept(session, present) or conn.refuse(rc)...
    while conn.accepted_with_pending_input:  # see "Pipelined packets" below
        events = conn.receive_data(b"")     # ...and handle these events the same way
    transport.write(conn.data_to_send())  # after *every* call: refuse() and violations queue bytes
    if conn.state == "closed": transport.close()

Lifecycle (the packet table ``_ON_PACKET`` below is the whole of it)::

    awaiting_connect --CONNECT--> (ConnectRequested; still "awaiting_connect" until the app decides)
        --accept()--> connected --DISCONNECT / violation / keepalive / close()--> closed
        --refuse()--> closed

What the session does by itself:
- CONNECT with an unsupported protocol (anything but MQTT level 4, MQIsdp/3 included) -> CONNACK 1
  and close; an empty client id with clean_session=0 -> CONNACK 2 and close. Both are reported as
  ConnectionLost(clean=False) and the application never sees ConnectRequested.
- QoS 1 PUBLISH -> PUBACK, before the application sees the MessageReceived. Every one is reported,
  DUP=1 or not: once PUBACK is sent the packet id is free [MQTT-4.3.2-2], and a new client restarts
  its ids at 1 while the session persists, so an id seen before does not make a message a duplicate.
  QoS 1 is at-least-once: a resend may be processed twice, a message is never dropped.
- SUBSCRIBE -> SUBACK granting min(requested, 1) for each filter the application allows (0x80 for the
  others), recorded in ``SessionState.subscriptions``; UNSUBSCRIBE -> UNSUBACK; PINGREQ -> PINGRESP.
- Outbound QoS 1 packet ids 1..65535, skipping ids still in flight; in-flight publishes live in the
  SessionState until PUBACKed and are resent with DUP=1 by ``accept()`` on the next connection.
- Protocol violations close the connection with ConnectionLost(clean=False): a packet before CONNECT,
  a second CONNECT, an inbound QoS 2 PUBLISH (IoT Hub has no QoS 2), a PUBLISH over IoT Hub's 256 KB
  message limit (topic and payload; refused before any PUBACK), PUBREC/PUBREL/PUBCOMP, and
  packets only a server sends (CONNACK, SUBACK, UNSUBACK, PINGRESP). After close, bytes are ignored.

Pipelined packets: a client may send packets right behind CONNECT without waiting for CONNACK, and
a server must not act on them before it has accepted the connection [MQTT-3.1.4-5]. They are held,
undecoded, until ``accept()`` (dropped by ``refuse()``), and processed by the next
``receive_data()`` call, which may be ``receive_data(b"")``. ``accepted_with_pending_input`` tells
the server that such a call is due.

Deviations from and additions to docs/emulator-internals.md:
- ``__init__`` also takes ``connect_timeout`` (default 30 s): before CONNECT, ``keepalive_deadline()``
  is the connection start + connect_timeout and ``check_keepalive()`` reports
  ConnectionLost("connect timeout"). None disables it.
- ``accepted_with_pending_input`` (above); ``connect`` (the accepted or pending Connect packet) and
  ``session`` (the attached SessionState) are readable.
- ``accept()`` on a clean_session=1 connection clears the SessionState it is given and sends
  session_present=0, as [MQTT-3.1.2-6] and [MQTT-3.2.2-1] require.
- ``SessionState`` lives in session_state.py (re-exported here, where the contract puts it) and
  exposes more than the contract names: see that module.
- ``Subscribed.topics`` carries the *granted* QoS, the same values recorded in
  ``SessionState.subscriptions``; ``Subscribed.refused`` the filters answered with 0x80.
- ``accept()``/``refuse()``/``close()`` after the connection closed are no-ops (the transport can
  die while the application is deciding); ``publish()`` on a closed connection sends nothing and
  returns None. Calling them in a state where they make no sense otherwise raises RuntimeError.
- ``close()`` keeps what is already queued (e.g. the PUBACKs before a violation); only
  ``connection_lost()`` discards it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Callable, Literal, Union

from mqttcodec.decoder import PacketReader
from mqttcodec.encoder import encode_parts
from mqttcodec.packets import (
    CONNACK_ACCEPTED,
    CONNACK_IDENTIFIER_REJECTED,
    CONNACK_UNACCEPTABLE_PROTOCOL,
    DEFAULT_MAX_PACKET_SIZE,
    SUBACK_FAILURE,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    ProtocolError,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)
from .session_state import SessionState

__all__ = [
    "SessionState",
    "ServerConnection",
    "Event",
    "ConnectRequested",
    "MessageReceived",
    "Subscribed",
    "Unsubscribed",
    "Delivered",
    "ConnectionLost",
]

log = logging.getLogger(__name__)

#: IoT Hub's longest server-side keepalive timeout (29.45 minutes): 1.5 x the client's keepalive
#: [MQTT-3.1.2-24], capped here, and also the timeout of a client that asks for none (keepalive 0).
MAX_KEEPALIVE_TIMEOUT_SECONDS = 1767.0


#: IoT Hub's largest message: a PUBLISH whose topic (with its property bag) and payload are longer is
#: refused before it is acknowledged, and IoT Hub closes the connection.
MAX_MESSAGE_BYTES = 256 * 1024


def keepalive_timeout(keepalive: int) -> float:
    """Seconds of silence after which the hub drops a client that CONNECTed with ``keepalive``."""
    if keepalive == 0:
        return MAX_KEEPALIVE_TIMEOUT_SECONDS
    return min(1.5 * keepalive, MAX_KEEPALIVE_TIMEOUT_SECONDS)


# --------------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class ConnectRequested:
    """The application must call accept() or refuse()."""
    connect: Connect


@dataclass(frozen=True, slots=True)
class MessageReceived:
    topic: str
    payload: bytes
    qos: int
    packet_id: int | None
    retain: bool = False  # IoT Hub keeps no retained messages; it marks the message `mqtt-retain`


@dataclass(frozen=True, slots=True)
class Subscribed:
    topics: tuple[tuple[str, int], ...]  # (topic filter, granted QoS)
    refused: tuple[str, ...] = ()  # the filters answered with SUBACK 0x80 (not recorded)


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Delivered:
    packet_id: int  # our outbound QoS 1 publish was PUBACKed


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    reason: str
    clean: bool  # True only for a client DISCONNECT


Event = Union[ConnectRequested, MessageReceived, Subscribed, Unsubscribed, Delivered, ConnectionLost]


# --------------------------------------------------------------------------------------------------
# One network connection

# Internal states. "connect_received" (CONNECT decoded, waiting for accept/refuse) is shown to the
# outside as "awaiting_connect", as the contract lists only three.
_AWAITING_CONNECT = "awaiting_connect"
_CONNECT_RECEIVED = "connect_received"
_CONNECTED = "connected"
_CLOSED = "closed"

# Every packet a client may send, per state, and the method that handles it. Anything else is a
# protocol violation (see _violation_reason for how it is named).
_ON_PACKET: dict[str, dict[type, str]] = {
    _AWAITING_CONNECT: {Connect: "_on_connect"},
    _CONNECT_RECEIVED: {},  # not reached: bytes behind CONNECT stay undecoded until accept()
    _CONNECTED: {
        Publish: "_on_publish",
        Puback: "_on_puback",
        Subscribe: "_on_subscribe",
        Unsubscribe: "_on_unsubscribe",
        Pingreq: "_on_pingreq",
        Disconnect: "_on_disconnect",
    },
    _CLOSED: {},
}

_SERVER_ONLY = (Connack, Suback, Unsuback, Pingresp)
_QOS2_FLOW = (Pubrec, Pubrel, Pubcomp)


def _violation_reason(packet: Packet) -> str:
    name = type(packet).__name__.upper()
    if isinstance(packet, _SERVER_ONLY):
        return f"protocol violation: {name} is sent only by a server"
    if isinstance(packet, _QOS2_FLOW):
        return f"protocol violation: {name} (QoS 2 is not supported)"
    if isinstance(packet, Connect):
        return "protocol violation: second CONNECT on a connection"
    return f"protocol violation: {name} before CONNECT"


class ServerConnection:
    """One client connection, server side. See the module docstring for the contract."""

    __slots__ = (
        "_now", "_reader", "_state", "_out", "_connect", "_session", "_last_received",
        "_connect_timeout", "_max_held", "_held_input", "_subscription_allowed",
    )

    def __init__(
        self,
        *,
        now: Callable[[], float] = time.monotonic,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        connect_timeout: float | None = 30.0,
    ) -> None:
        self._now = now
        self._reader = PacketReader(max_packet_size)
        self._state = _AWAITING_CONNECT
        self._out: list[bytes] = []
        self._connect: Connect | None = None
        self._session: SessionState | None = None
        self._last_received = now()
        self._connect_timeout = connect_timeout
        # Bytes a client may pipeline behind CONNECT before we answer it.
        self._max_held = 2 * max_packet_size
        self._held_input = False  # accept() left bytes from behind CONNECT for receive_data() to decode
        self._subscription_allowed: Callable[[str], bool] | None = None  # None: every filter is granted

    # ---------------------------------------------------------------------------------- properties

    @property
    def state(self) -> Literal["awaiting_connect", "connected", "closed"]:
        return _AWAITING_CONNECT if self._state == _CONNECT_RECEIVED else self._state  # type: ignore[return-value]

    @property
    def connect(self) -> Connect | None:
        """The CONNECT packet of this connection, once received."""
        return self._connect

    @property
    def session(self) -> SessionState | None:
        """The SessionState attached by accept()."""
        return self._session

    @property
    def accepted_with_pending_input(self) -> bool:
        """True when bytes that arrived behind CONNECT wait for a receive_data(b"") call.

        Goes False at the next receive_data() call even if those bytes end in a partial packet, so
        ``while conn.accepted_with_pending_input: conn.receive_data(b"")`` always terminates.
        """
        return self._held_input and self._state == _CONNECTED

    # -------------------------------------------------------------------------------------- input

    def receive_data(self, data: bytes) -> list[Event]:
        """Bytes from the network -> events. Never raises: bad input becomes ConnectionLost."""
        if self._state == _CLOSED:
            return []
        if data:
            self._last_received = self._now()
        self._held_input = False
        reader = self._reader
        events: list[Event] = []
        try:
            reader.append(data)
            if self._state == _CONNECT_RECEIVED:
                if reader.buffered > self._max_held:
                    self._lose(events, "protocol violation: too much data before CONNACK")
                return events
            while (packet := reader.next_packet()) is not None:
                handler = _ON_PACKET[self._state].get(type(packet))
                if handler is None:
                    self._lose(events, _violation_reason(packet))
                    break
                getattr(self, handler)(packet, events)
                if self._state != _CONNECTED:  # CONNECT received, DISCONNECT, or a refusal
                    break
        except ProtocolError as exc:
            self._lose(events, f"protocol error: {exc}")
        except Exception as exc:  # a bug here must not take the server down with it
            log.exception("MQTT session failed on input")
            self._lose(events, f"internal error: {exc!r}")
        return events

    def connection_lost(self) -> None:
        """The transport closed underneath: nothing more can be sent."""
        self._state = _CLOSED
        self._out.clear()
        self._reader = PacketReader(2)

    # --------------------------------------------------------------------- application decisions

    def accept(self, session: SessionState, session_present: bool, *,
               subscription_allowed: Callable[[str], bool] | None = None) -> None:
        """CONNACK 0, attach ``session`` and resend its in-flight publishes with DUP=1.
        ``subscription_allowed(filter)``: False answers that filter with SUBACK 0x80 (failure)."""
        if self._state == _CLOSED:
            return
        if self._state != _CONNECT_RECEIVED:
            raise RuntimeError(f"accept() with no CONNECT pending (state {self.state!r})")
        assert self._connect is not None
        if self._connect.clean_session:
            session.clear()
            session_present = False
        self._session = session
        self._subscription_allowed = subscription_allowed
        self._state = _CONNECTED
        self._held_input = self._reader.buffered > 0
        self._send(Connack(bool(session_present), CONNACK_ACCEPTED))
        for publish in session.inflight.values():
            self._send(replace(publish, dup=True))

    def refuse(self, return_code: int) -> None:
        """CONNACK ``return_code`` (1..5), then closed; packets sent behind CONNECT are dropped."""
        if not 1 <= return_code <= 5:
            raise ValueError(f"refuse() needs a CONNACK return code 1..5, not {return_code!r}")
        if self._state == _CLOSED:
            return
        if self._state != _CONNECT_RECEIVED:
            raise RuntimeError(f"refuse() with no CONNECT pending (state {self.state!r})")
        self._send(Connack(False, return_code))
        self._close()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int | None:
        """Queue a PUBLISH to the client; the packet id for QoS 1 (watch for Delivered), else None."""
        if qos not in (0, 1):
            raise ValueError(f"the emulator publishes with QoS 0 or 1, not {qos!r}")
        if self._state == _CLOSED:
            return None
        if self._state != _CONNECTED:
            raise RuntimeError(f"publish() before accept() (state {self.state!r})")
        session = self._session
        assert session is not None
        if qos == 0:
            self._send(Publish(topic, payload))
            return None
        packet = Publish(topic, payload, 1, session.allocate_packet_id())
        self._send(packet)  # encodes (and validates) before the id is recorded as in flight
        session.inflight[packet.packet_id] = packet
        return packet.packet_id

    def close(self) -> None:
        """Send nothing more (what is already queued stays in data_to_send()); state -> closed."""
        self._close()

    # ------------------------------------------------------------------------------------- output

    def data_to_send(self) -> bytes:
        """Everything queued since the last call."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def keepalive_deadline(self) -> float | None:
        """When check_keepalive() will close the connection unless more bytes arrive first."""
        if self._state == _CLOSED:
            return None
        if self._connect is None:
            if self._connect_timeout is None:
                return None
            return self._last_received + self._connect_timeout
        return self._last_received + keepalive_timeout(self._connect.keepalive)

    def check_keepalive(self, now: float | None = None) -> list[Event]:
        """[ConnectionLost] if the deadline has passed (the connection is then closed), else [].
        ``now``: the clock's reading, when a sweep over many connections has read it once for all."""
        deadline = self.keepalive_deadline()
        if deadline is None or (self._now() if now is None else now) < deadline:
            return []
        events: list[Event] = []
        self._lose(events, "keepalive expired" if self._connect is not None else "connect timeout")
        return events

    # ---------------------------------------------------------------------------- packet handlers

    def _on_connect(self, packet: Connect, events: list[Event]) -> None:
        self._connect = packet
        self._state = _CONNECT_RECEIVED
        if (packet.protocol_name, packet.protocol_level) != ("MQTT", 4):
            self._send(Connack(False, CONNACK_UNACCEPTABLE_PROTOCOL))
            self._lose(events, f"CONNECT refused (CONNACK 1): unsupported protocol {packet.protocol_name} level "
                               f"{packet.protocol_level}; IoT Hub speaks MQTT 3.1.1 (protocol level 4)")
        elif not packet.client_id and not packet.clean_session:
            self._send(Connack(False, CONNACK_IDENTIFIER_REJECTED))
            self._lose(events, "CONNECT refused (CONNACK 2): empty client id with clean_session=0; "
                               "use the device id as the client id")
        else:
            events.append(ConnectRequested(packet))

    def _on_publish(self, packet: Publish, events: list[Event]) -> None:
        size = len(packet.payload) + len(packet.topic.encode("utf-8"))
        if size > MAX_MESSAGE_BYTES:
            self._lose(events, f"message too large: {size} bytes of topic and payload, over IoT Hub's "
                               f"{MAX_MESSAGE_BYTES} (256 KB) limit; send smaller messages")
        elif packet.qos == 0:
            events.append(MessageReceived(packet.topic, packet.payload, 0, None, packet.retain))
        elif packet.qos == 1:
            assert packet.packet_id is not None
            self._send(Puback(packet.packet_id))
            events.append(MessageReceived(packet.topic, packet.payload, 1, packet.packet_id, packet.retain))
        else:
            self._lose(events, "protocol violation: QoS 2 PUBLISH (QoS 2 is not supported)")

    def _on_puback(self, packet: Puback, events: list[Event]) -> None:
        assert self._session is not None
        if self._session.inflight.pop(packet.packet_id, None) is not None:
            events.append(Delivered(packet.packet_id))
        # A PUBACK for an id not in flight (e.g. acked twice across a resend) is harmless: ignore it.

    def _on_subscribe(self, packet: Subscribe, events: list[Event]) -> None:
        assert self._session is not None
        allowed = self._subscription_allowed or (lambda topic_filter: True)
        codes = tuple(min(qos, 1) if allowed(topic_filter) else SUBACK_FAILURE
                      for topic_filter, qos in packet.topics)
        granted = tuple((topic_filter, code) for (topic_filter, _), code in zip(packet.topics, codes)
                        if code != SUBACK_FAILURE)
        refused = tuple(topic_filter for (topic_filter, _), code in zip(packet.topics, codes)
                        if code == SUBACK_FAILURE)
        self._session.subscriptions.update(granted)
        self._send(Suback(packet.packet_id, codes))
        events.append(Subscribed(granted, refused))

    def _on_unsubscribe(self, packet: Unsubscribe, events: list[Event]) -> None:
        assert self._session is not None
        for topic_filter in packet.topics:
            self._session.subscriptions.pop(topic_filter, None)
        self._send(Unsuback(packet.packet_id))
        events.append(Unsubscribed(packet.topics))

    def _on_pingreq(self, packet: Pingreq, events: list[Event]) -> None:
        self._send(Pingresp())

    def _on_disconnect(self, packet: Disconnect, events: list[Event]) -> None:
        self._close()
        events.append(ConnectionLost("client disconnected", True))

    # ---------------------------------------------------------------------------------- internals

    def _send(self, packet: Packet) -> None:
        self._out.extend(encode_parts(packet))

    def _close(self) -> None:
        self._state = _CLOSED
        self._reader = PacketReader(2)  # drop buffered input; nothing more is decoded

    def _lose(self, events: list[Event], reason: str) -> None:
        log.debug("MQTT connection %s closed: %s", self._connect.client_id if self._connect else "?", reason)
        self._close()
        events.append(ConnectionLost(reason, False))

    def __repr__(self) -> str:
        client = self._connect.client_id if self._connect else None
        return f"<ServerConnection {client!r} {self._state}>"
