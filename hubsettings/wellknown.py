"""The local emulator's well-known development credentials.

Like Azurite's well-known account key, these values are public on purpose so that everything runs
offline with no set-up. They are for development only: never use them on a hub reachable by others.
The emulator registers them at start; the settings fall back to them when nothing else is configured.
"""

from __future__ import annotations

HOST_NAME = "localhost"
MQTT_PORT = 8883  # hard-coded by azure-iot-device
# IoT Hub serves HTTPS REST and MQTT over WebSockets on 443 of its one host name, and clients assume it
# (MQTT over WebSockets always dials 443; the Node service SDK and az take no port in HostName).
REST_PORT = 443
REST_FALLBACK_PORT = 9443  # where the emulator serves them when it may not bind 443 (8443 is often taken)
AMQP_PORT = 5671  # AMQP over TLS: the service SDKs' cloud-to-device messages and feedback
BIND_ADDRESS = "127.0.0.1"

#: Shared access policies, as on a new IoT Hub: name -> (key, rights).
POLICIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "iothubowner": (
        "T6xT1uRq2Yu/OCCKZiqAvreSRB3UAZT7VW7GgT3mpRQ=",
        ("RegistryRead", "RegistryWrite", "ServiceConnect", "DeviceConnect"),
    ),
    "service": ("6RtpNi9tM+k7WsV76m/tjmB0FGe43XViHI2bxLJnnXg=", ("ServiceConnect",)),
    "registryRead": ("wRuNXfBebALsWcY2z1qDvsnybmsAd+Q3jSjs4s7csak=", ("RegistryRead",)),
    "registryReadWrite": (
        "VPbJBoqR72KxKIYtQJdpgoQNCI50EuyG9gcOomv+vwI=",
        ("RegistryRead", "RegistryWrite"),
    ),
}
OWNER_POLICY = "iothubowner"

#: The device the Microsoft tutorials use, pre-registered with a well-known key.
DEVICE_ID = "myDeviceId"
DEVICE_KEY = "8cc0Q0uyQZXpjwRZmcbS7ylk+eo0FLauFovl2gd1Vbc="

#: DPS: one id scope and one symmetric-key group enrollment; device keys derive from the group key.
DPS_ID_SCOPE = "0ne00000DEV"
DPS_GROUP_ENROLLMENT = "default-group"
DPS_GROUP_KEY = "GE5K8DIILj1gEg6WNcmgqJyQsWkphPUMZ9ZOESClIbs="


def service_connection_string(
    host_name: str = HOST_NAME, rest_port: int = REST_PORT, policy: str = OWNER_POLICY
) -> str:
    """The service connection string for the emulator's REST front: no port on 443, exactly as Azure's;
    on the fallback port it is part of HostName (only the Python SDKs accept that)."""
    host = host_name if rest_port == 443 else f"{host_name}:{rest_port}"
    key = POLICIES[policy][0]
    return f"HostName={host};SharedAccessKeyName={policy};SharedAccessKey={key}"


def device_connection_string(
    host_name: str = HOST_NAME, device_id: str = DEVICE_ID, key: str = DEVICE_KEY
) -> str:
    """A device connection string; devices always use MQTT on 8883, so HostName carries no port."""
    return f"HostName={host_name};DeviceId={device_id};SharedAccessKey={key}"
