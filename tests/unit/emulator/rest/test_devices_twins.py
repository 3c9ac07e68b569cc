"""Device identity and twin routes: status codes, bodies, etags and If-Match, as the SDK expects."""

from __future__ import annotations

import pytest

from emulator.rest.errors import ERROR_CODE_HEADER

from .conftest import iothub_error


def sas_device(device_id: str, status: str = "enabled", **keys) -> dict:
    return {"deviceId": device_id, "status": status, "capabilities": {"iotEdge": False},
            "authentication": {"type": "sas", "symmetricKey": {"primaryKey": keys.get("primary"),
                                                               "secondaryKey": keys.get("secondary")}}}


async def test_create_device_answers_200_with_generated_keys(rest, hub):
    response = await rest.call("PUT", "/devices/d1", json=sas_device("d1"))
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["deviceId"] == "d1" and body["status"] == "enabled"
    assert body["authentication"]["symmetricKey"]["primaryKey"] == hub.get_device("d1").primary_key
    assert response.headers["ETag"] == f'"{body["etag"]}"'


async def test_create_device_keeps_given_keys_and_status(rest, hub):
    key = "8cc0Q0uyQZXpjwRZmcbS7ylk+eo0FLauFovl2gd1Vbc="
    response = await rest.call("PUT", "/devices/d2", json=sas_device("d2", "disabled", primary=key))
    assert response.status == 200
    assert hub.get_device("d2").primary_key == key
    assert hub.get_device("d2").status == "disabled"


async def test_create_existing_device_is_409(rest):
    await rest.call("PUT", "/devices/d1", json=sas_device("d1"))
    response = await rest.call("PUT", "/devices/d1", json=sas_device("d1"))
    assert response.status == 409
    assert (await response.json())["Message"].startswith("ErrorCode:DeviceAlreadyExists;")


@pytest.mark.parametrize("body, fragment", [
    ({"deviceId": "other"}, "differs"),
    ({"deviceId": "d1", "authentication": {"type": "selfSigned"}}, "not supported"),
    ({"deviceId": "d1", "status": "sleeping"}, "status"),
    ([1, 2], "JSON object"),
])
async def test_bad_device_bodies_are_400(rest, body, fragment):
    response = await rest.call("PUT", "/devices/d1", json=body)
    assert response.status == 400
    assert fragment in (await response.json())["Message"]


async def test_invalid_device_id_is_400(rest):
    response = await rest.call("PUT", "/devices/bad%20id", json={"deviceId": "bad id"})
    assert response.status == 400


async def test_get_device_and_missing_device(rest):
    response = await rest.call("GET", "/devices/myDeviceId")
    assert response.status == 200
    assert (await response.json())["deviceId"] == "myDeviceId"

    missing = await rest.call("GET", "/devices/nobody")
    assert missing.status == 404
    error = await iothub_error(missing)
    assert (error.name, error.code, error.envelope) == ("DeviceNotFound", None, "registry")
    assert missing.headers[ERROR_CODE_HEADER] == "DeviceNotFound"


@pytest.mark.parametrize("verb, path", [
    ("GET", "/devices/"), ("GET", "/devices/myDeviceId/"), ("GET", "/twins/myDeviceId/"),
    ("POST", "/devices/query/"), ("GET", "/jobs/v2/query/"),
])
async def test_paths_with_a_trailing_slash_are_served(rest, verb, path):
    """The Node service SDK lists devices as GET /devices/?api-version=..; IoT Hub serves it."""
    body = {"query": "SELECT * FROM devices"} if verb == "POST" else None
    response = await rest.call(verb, path, json=body)
    assert response.status == 200, await response.text()


async def test_list_devices_honours_top(rest, hub):
    for n in range(5):
        hub.create_device(f"list-{n}")
    everything = await (await rest.call("GET", "/devices")).json()
    assert len(everything) == 6
    two = await rest.call("GET", "/devices?top=2")
    assert two.status == 200
    assert len(await two.json()) == 2
    assert len(await (await rest.call("GET", "/devices?top=0")).json()) == 6  # outside 1..1000: 1000
    assert (await rest.call("GET", "/devices?top=many")).status == 400


async def test_update_device_with_etag_and_stale_etag(rest, hub):
    created = await (await rest.call("PUT", "/devices/d1", json=sas_device("d1"))).json()
    updated = await rest.call("PUT", "/devices/d1", json=sas_device("d1", "disabled"),
                              headers={"If-Match": f'"{created["etag"]}"'})
    assert updated.status == 200
    assert (await updated.json())["status"] == "disabled"
    stale = await rest.call("PUT", "/devices/d1", json=sas_device("d1"), headers={"If-Match": f'"{created["etag"]}"'})
    assert stale.status == 412
    anyway = await rest.call("PUT", "/devices/d1", json=sas_device("d1"), headers={"If-Match": '"*"'})
    assert anyway.status == 200 and hub.get_device("d1").status == "enabled"


async def test_update_missing_device_is_404(rest):
    response = await rest.call("PUT", "/devices/ghost", json=sas_device("ghost"), headers={"If-Match": '"*"'})
    assert response.status == 404


async def test_delete_device_is_204_and_checks_etag(rest, hub):
    created = await (await rest.call("PUT", "/devices/d1", json=sas_device("d1"))).json()
    stale = await rest.call("DELETE", "/devices/d1", headers={"If-Match": '"bm90LWl0"'})
    assert stale.status == 412
    deleted = await rest.call("DELETE", "/devices/d1", headers={"If-Match": f'"{created["etag"]}"'})
    assert deleted.status == 204
    assert "d1" not in hub.registry
    again = await rest.call("DELETE", "/devices/d1", headers={"If-Match": '"*"'})
    assert again.status == 404


async def test_get_twin(rest):
    response = await rest.call("GET", "/twins/myDeviceId")
    assert response.status == 200
    twin = await response.json()
    assert twin["deviceId"] == "myDeviceId"
    assert twin["properties"]["desired"]["$version"] == 1
    assert response.headers["ETag"] == f'"{twin["etag"]}"'
    assert (await rest.call("GET", "/twins/nobody")).status == 404


async def test_patch_twin_merges_and_pushes_desired_to_a_connected_device(rest, hub, connections):
    hub.device_connected("myDeviceId")
    etag = (await (await rest.call("GET", "/twins/myDeviceId")).json())["etag"]
    response = await rest.call("PATCH", "/twins/myDeviceId", headers={"If-Match": f'"{etag}"'},
                               json={"tags": {"floor": 2}, "properties": {"desired": {"telemetryInterval": 5}}})
    assert response.status == 200
    twin = await response.json()
    assert twin["tags"] == {"floor": 2}
    assert twin["properties"]["desired"]["telemetryInterval"] == 5
    assert connections.desired == [("myDeviceId", {"telemetryInterval": 5, "$version": 2})]


async def test_patch_twin_with_stale_etag_is_412(rest):
    etag = (await (await rest.call("GET", "/twins/myDeviceId")).json())["etag"]
    await rest.call("PATCH", "/twins/myDeviceId", json={"tags": {"a": 1}}, headers={"If-Match": '"*"'})
    response = await rest.call("PATCH", "/twins/myDeviceId", json={"tags": {"a": 2}},
                               headers={"If-Match": f'"{etag}"'})
    assert response.status == 412
    assert (await response.json())["Message"].startswith("ErrorCode:PreconditionFailed;")


async def test_replace_twin_drops_what_is_not_given(rest):
    await rest.call("PATCH", "/twins/myDeviceId", json={"tags": {"a": 1, "b": 2}})
    response = await rest.call("PUT", "/twins/myDeviceId", json={"tags": {"b": 3}, "properties": {"desired": {}}})
    assert response.status == 200
    assert (await response.json())["tags"] == {"b": 3}


@pytest.mark.parametrize("verb, path", [
    ("PUT", "/devices/d1"), ("PATCH", "/twins/myDeviceId"), ("PUT", "/twins/myDeviceId"),
    ("POST", "/twins/myDeviceId/methods"), ("POST", "/devices/query"), ("PUT", "/jobs/v2/j1"),
])
@pytest.mark.parametrize("data", [b"{not json", b"", b"\xff\xfe\x00", b"[1, NaN]"])
async def test_invalid_json_is_400_on_every_route(rest, verb, path, data):
    response = await rest.call(verb, path, data=data, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert (await iothub_error(response)).name == "ArgumentInvalid"


async def test_twin_patch_that_is_not_an_object_is_400(rest):
    response = await rest.call("PATCH", "/twins/myDeviceId", json=[1])
    assert response.status == 400


async def test_emulator_only_route_lists_received_telemetry(rest, hub):
    hub.receive_telemetry("myDeviceId", b'{"temperature": 21}', {"alert": "no"}, {"$.ct": "application/json"})
    hub.receive_telemetry("myDeviceId", b"\xff\x00")
    response = await rest.call("GET", "/_emulator/devices/myDeviceId/messages")
    assert response.status == 200
    messages = (await response.json())["messages"]
    assert [m["body"] for m in messages] == ['{"temperature": 21}', {"base64": "/wA="}]
    assert messages[0]["properties"] == {"alert": "no"}
    assert messages[0]["systemProperties"] == {"$.ct": "application/json"}
    assert (await rest.call("GET", "/_emulator/devices/nobody/messages")).status == 404
    assert (await rest.call("GET", "/_emulator/devices/myDeviceId/messages", policy="registryRead")).status == 401


async def test_registry_and_service_statistics(rest, hub):
    hub.create_device("off", status="disabled")
    hub.device_connected("myDeviceId")
    devices = await (await rest.call("GET", "/statistics/devices")).json()
    assert devices == {"totalDeviceCount": len(hub.registry), "enabledDeviceCount": len(hub.registry) - 1,
                       "disabledDeviceCount": 1}
    service = await (await rest.call("GET", "/statistics/service")).json()
    assert service == {"connectedDeviceCount": 1}
