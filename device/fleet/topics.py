"""IoT Hub's and DPS's MQTT topics (https://learn.microsoft.com/azure/iot/iot-mqtt-connect-to-iot-hub),
built and parsed as plain strings."""

from __future__ import annotations

import urllib.parse

from .. import __version__

HUB_API_VERSION = "2021-04-12"
DPS_API_VERSION = "2019-03-31"
CLIENT_TYPE = f"iothub-lab-fleet/{__version__}"

METHOD_REQUESTS = "$iothub/methods/POST/"
DESIRED_PATCHES = "$iothub/twin/PATCH/properties/desired/"
TWIN_RESPONSES = "$iothub/twin/res/"
DPS_RESPONSES = "$dps/registrations/res/"


def device_subscriptions(device_id: str) -> tuple[str, ...]:
    """What a device that handles methods, desired patches, twin answers and C2D subscribes to."""
    return ("$iothub/methods/POST/#", "$iothub/twin/PATCH/properties/desired/#", "$iothub/twin/res/#",
            f"devices/{device_id}/messages/devicebound/#")


def hub_username(host_name: str, device_id: str) -> str:
    client_type = urllib.parse.quote(CLIENT_TYPE, safe="")
    return f"{host_name}/{device_id}/?api-version={HUB_API_VERSION}&DeviceClientType={client_type}"


def dps_username(id_scope: str, registration_id: str) -> str:
    client_type = urllib.parse.quote(CLIENT_TYPE, safe="")
    return f"{id_scope}/registrations/{registration_id}/api-version={DPS_API_VERSION}&ClientVersion={client_type}"


def query_of(topic: str) -> dict[str, str]:
    """The `?a=b&c=d` part of a topic (values URL-decoded)."""
    _, _, query = topic.partition("?")
    pairs: dict[str, str] = {}
    for pair in query.split("&"):
        key, sep, value = pair.partition("=")
        if sep:
            pairs[key] = urllib.parse.unquote(value)
    return pairs


def rid_of(topic: str) -> str | None:
    """The `$rid` value of an IoT Hub topic (`...?$rid=X&...`), or None."""
    return query_of(topic).get("$rid")


def status_of(topic: str, prefix: str) -> int | None:
    """The status in `{prefix}{status}/?...` (twin and DPS answers), or None."""
    head = topic[len(prefix):].split("/", 1)[0]
    return int(head) if head.isdigit() else None


def method_name_of(topic: str) -> str:
    """The method name in `$iothub/methods/POST/{name}/?$rid=...`."""
    return topic[len(METHOD_REQUESTS):].split("/", 1)[0]


def method_response(status: int, rid: str) -> str:
    return f"$iothub/methods/res/{status}/?$rid={rid}"


def twin_get(rid: str) -> str:
    return f"$iothub/twin/GET/?$rid={rid}"


def reported_patch(rid: str) -> str:
    return f"$iothub/twin/PATCH/properties/reported/?$rid={rid}"


def telemetry(device_id: str, properties: dict[str, str]) -> str:
    encoded = urllib.parse.urlencode(properties, quote_via=urllib.parse.quote)
    return f"devices/{device_id}/messages/events/{encoded}"


def dps_register(rid: str) -> str:
    return f"$dps/registrations/PUT/iotdps-register/?$rid={rid}"


def dps_status(rid: str, operation_id: str) -> str:
    return (f"$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}"
            f"&operationId={urllib.parse.quote(operation_id, safe='')}")
