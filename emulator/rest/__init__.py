"""The service REST front (HTTPS, aiohttp) and MQTT over WebSockets, on the emulator's event loop."""

from .app import API_VERSIONS, create_app
from .listener import RestServer, start_rest_server
from .service_front import ServiceFront

__all__ = ["API_VERSIONS", "RestServer", "ServiceFront", "create_app", "start_rest_server"]
