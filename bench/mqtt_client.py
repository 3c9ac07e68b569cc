"""The benchmarks' raw MQTT client is the fleet engine's lowest layer (device/fleet/mqtt.py): one
asyncio protocol per connection on the emulator's own codec, with none of the SDK's threads. The raw
fleet (bench/fleet.py) drives it directly; `iothub-device --count` runs the whole engine over it."""

from __future__ import annotations

import ssl

from device.fleet.mqtt import MqttConnection as MqttClient
from device.fleet.mqtt import MqttRefused, OnPublish, open_client, shrink_tls_read_buffers
from device.fleet.mqtt import client_ssl_context as _client_ssl_context
from device.fleet.topics import rid_of

__all__ = ["MqttClient", "MqttRefused", "OnPublish", "client_ssl_context", "open_client", "rid_of",
           "shrink_tls_read_buffers"]


def client_ssl_context(ca_file: str) -> ssl.SSLContext:
    """Trust the given CA, with host name checks on (as the SDKs do)."""
    return _client_ssl_context(ca_file=ca_file)
