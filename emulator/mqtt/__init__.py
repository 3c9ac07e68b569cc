"""MQTT 3.1.1 for the emulator: a codec (bytes <-> packets) and a sans-I/O server session.

See docs/emulator-internals.md ("MQTT codec", "MQTT session") and the docstrings of codec.py (the
codec's facade over packets.py, encoder.py and decoder.py), session.py and session_state.py for the
few places where this goes beyond that contract.
"""

from . import codec
from .codec import *  # noqa: F401,F403 - the codec's public names, listed once in codec.__all__
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
    *codec.__all__,
    "ConnectionLost", "ConnectRequested", "Delivered", "Event", "MessageReceived", "ServerConnection",
    "SessionState", "Subscribed", "Unsubscribed",
]
