"""MQTT 3.1.1 for the emulator: a codec (bytes <-> packets) and a sans-I/O server session.

See docs/emulator-internals.md ("MQTT codec", "MQTT session") and the docstrings of codec.py (the
codec's facade over packets.py, encoder.py and decoder.py), session.py and session_state.py for the
few places where this goes beyond that contract.
"""

from .decoder import PacketReader
from .encoder import encode, encode_parts
from .packets import (
    CONNACK_ACCEPTED,
    CONNACK_BAD_CREDENTIALS,
    CONNACK_IDENTIFIER_REJECTED,
    CONNACK_NOT_AUTHORIZED,
    CONNACK_SERVER_UNAVAILABLE,
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
    Will,
)
from .session import (
    ConnectionLost,
    ConnectRequested,
    Delivered,
    Event,
    MessageReceived,
    ServerConnection,
    Subscribed,
    Unsubscribed,
)
from .session_state import SessionState

__all__ = [
    "CONNACK_ACCEPTED", "CONNACK_BAD_CREDENTIALS", "CONNACK_IDENTIFIER_REJECTED", "CONNACK_NOT_AUTHORIZED",
    "CONNACK_SERVER_UNAVAILABLE", "CONNACK_UNACCEPTABLE_PROTOCOL", "DEFAULT_MAX_PACKET_SIZE", "SUBACK_FAILURE",
    "Connack", "Connect", "Disconnect", "Packet", "PacketReader", "Pingreq", "Pingresp", "ProtocolError",
    "Puback", "Pubcomp", "Publish", "Pubrec", "Pubrel", "Suback", "Subscribe", "Unsuback", "Unsubscribe",
    "Will", "encode", "encode_parts",
    "ConnectionLost", "ConnectRequested", "Delivered", "Event", "MessageReceived", "ServerConnection",
    "SessionState", "Subscribed", "Unsubscribed",
]
