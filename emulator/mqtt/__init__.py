"""IoT Hub's MQTT front for the emulator: a sans-I/O server session over the shared codec (``mqttcodec``),
the device and DPS fronts, and the TLS server.

See docs/emulator-internals.md ("MQTT codec", "MQTT session") and the docstrings of session.py and
session_state.py for the few places where this goes beyond that contract.
"""

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
    "ConnectionLost", "ConnectRequested", "Delivered", "Event", "MessageReceived", "ServerConnection",
    "SessionState", "Subscribed", "Unsubscribed",
]
