"""What a lightweight bench device answers, as pure functions of the inbound topic.

Hub mode speaks IoT Hub's topics (a method request gets `$iothub/methods/res/200`). Mosquitto mode is
the same request/response pattern on plain broker topics, at QoS 1 both ways: the requester publishes to
`ref/{device}/req/{rid}` (or to `ref/all/req/{rid}`, which every device subscribes to: the fan-out
reference), the device answers on `ref/res/{rid}/{device}`.
"""

from __future__ import annotations

import json

from .mqtt_client import rid_of

METHOD_REQUEST = "$iothub/methods/POST/"
DESIRED_PATCH = "$iothub/twin/PATCH/properties/desired/"
METHOD_ANSWER = b'{"locked":true}'
REFERENCE_RESPONSES = "ref/res/"


def device_id(prefix: str, index: int) -> str:
    """Bench device ids sort in creation order: dev-00000, dev-00001, ..."""
    return f"{prefix}{index:05d}"


def hub_reply(topic: str) -> tuple[str, bytes] | None:
    """The method response to publish for a method request topic; None for anything else."""
    if not topic.startswith(METHOD_REQUEST):
        return None
    rid = rid_of(topic)
    if rid is None:
        return None
    return f"$iothub/methods/res/200/?$rid={rid}", METHOD_ANSWER


def reported_ack(payload: bytes, rid: str) -> tuple[str, bytes] | None:
    """The reported patch acknowledging a desired patch (IoT Central's shape, as iothub-device
    reports it); None when the patch is not a JSON object."""
    try:
        patch = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(patch, dict):
        return None
    version = patch.get("$version")
    ack = {name: {"value": value, "ac": 200, "ad": "completed", "av": version}
           for name, value in patch.items() if not name.startswith("$")}
    return f"$iothub/twin/PATCH/properties/reported/?$rid={rid}", json.dumps(ack).encode()


def reference_request_topic(device: str, rid: str) -> str:
    return f"ref/{device}/req/{rid}"


BROADCAST = "all"


def reference_request_filters(device: str) -> tuple[str, ...]:
    """The device's own request topic and the broadcast one."""
    return f"ref/{device}/req/+", f"ref/{BROADCAST}/req/+"


def reference_reply(topic: str, device: str) -> tuple[str, bytes] | None:
    """The response for a reference request topic `ref/{device or all}/req/{rid}`; None for anything else."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != "ref" or parts[2] != "req" or not parts[3]:
        return None
    return f"{REFERENCE_RESPONSES}{parts[3]}/{device}", METHOD_ANSWER


def reference_rid(topic: str) -> str:
    """The rid of a reference response topic `ref/res/{rid}/{device}`."""
    return topic[len(REFERENCE_RESPONSES):].split("/", 1)[0]
