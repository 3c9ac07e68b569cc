"""Access control on the real sockets: devices over MQTT/TLS, services over HTTPS.

A device is refused with a wrong key, an expired token, another device's token, or an unknown or
disabled identity; it can neither subscribe to, publish on, nor receive another device's traffic.
Every service route (read from the REST front's routing table, so none can be missed) answers 401 in IoT
Hub's shape to no token, a wrong key, an expired token, a device key, a token for another hub, or a policy
lacking the route's rights, and changes nothing; a policy holding one of its rights gets past the check.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from mqttcodec import CONNACK_NOT_AUTHORIZED, SUBACK_FAILURE, Publish
from hubsettings import build_token, wellknown

from .conftest import new_key
from .support import (RawDevice, concrete_path, device_connect, device_token, route_bodies, service_routes,
                      service_token)


async def _connack(emulator, connect) -> tuple[int, RawDevice]:
    device = await RawDevice.open(emulator.address, emulator.ca_pem, emulator.host_name)
    return await device.connect(connect), device


CREDENTIAL_CASES = ["wrong key", "expired token", "another device's token", "unknown device",
                    "disabled device", "token for another hub", "not a token"]


@pytest.mark.parametrize("case", CREDENTIAL_CASES)
async def test_a_device_with_bad_credentials_is_refused_and_dropped(emulator, case):
    device_id, key = emulator.add_device(status="disabled" if case == "disabled device" else "enabled")
    other_id, other_key = emulator.add_device()
    host = emulator.host_name
    password = {
        "wrong key": device_token(host, device_id, new_key()),
        "expired token": device_token(host, device_id, key, ttl=-1),
        "another device's token": device_token(host, other_id, other_key),
        "unknown device": device_token(host, device_id + "-unknown", key),
        "disabled device": device_token(host, device_id, key),
        "token for another hub": build_token(f"otherhub.azure-devices.net/devices/{device_id}", key),
        "not a token": "hello",
    }[case]
    client_id = device_id + "-unknown" if case == "unknown device" else device_id
    code, device = await _connack(emulator, device_connect(host, client_id, password))
    try:
        assert code == CONNACK_NOT_AUTHORIZED
        assert await device.wait_closed()
        twin = emulator.threaded.get_twin(device_id)
        assert twin["connectionState"] == "Disconnected"
    finally:
        await device.close()


async def test_the_right_credentials_connect(emulator):
    """The control for the refusals above: the same path with a good token is accepted."""
    device_id, key = emulator.add_device()
    device = await RawDevice.connected(emulator, device_id, key)
    try:
        assert emulator.threaded.get_twin(device_id)["connectionState"] == "Connected"
    finally:
        await device.close()


async def test_a_device_cannot_subscribe_to_another_devices_topics(emulator):
    """Filters that name another device or no topic of this one are refused; wildcards that also match
    this device's own topics (`#`, as Microsoft's MQTT sample subscribes) are granted, as on IoT Hub:
    delivery only ever matches the device's own traffic (next test)."""
    a_id, a_key = emulator.add_device()
    b_id, _ = emulator.add_device()
    device = await RawDevice.connected(emulator, a_id, a_key, subscribe=())
    try:
        forbidden = [f"devices/{b_id}/messages/devicebound/#", f"devices/{b_id}/#", "$dps/registrations/res/#"]
        allowed = [f"devices/{a_id}/messages/devicebound/#", "$iothub/methods/POST/#", "#",
                   "devices/+/messages/devicebound/#", "devices/#"]
        codes = await device.subscribed(*forbidden, *allowed)
        assert codes == (SUBACK_FAILURE,) * len(forbidden) + (1,) * len(allowed)
    finally:
        await device.close()


async def test_a_device_never_receives_another_devices_traffic(emulator):
    """A subscribes to everything it can think of; B gets its method and desired patch, A nothing."""
    a_id, a_key = emulator.add_device()
    b_id, b_key = emulator.add_device()
    eavesdropper = await RawDevice.connected(emulator, a_id, a_key)
    target = await RawDevice.connected(emulator, b_id, b_key)
    try:
        await eavesdropper.subscribed("#", f"devices/{b_id}/#", "$iothub/#", "devices/+/messages/devicebound/#")
        call = asyncio.get_running_loop().run_in_executor(
            None, lambda: emulator.threaded.invoke_method(b_id, "secret", {"pin": 1234}, response_timeout=10))
        request = await target.expect(lambda p: isinstance(p, Publish) and "/methods/POST/" in p.topic)
        rid = request.topic.split("$rid=")[1]
        # A answers B's request with B's rid: it must not complete B's call.
        eavesdropper.publish(f"$iothub/methods/res/200/?$rid={rid}", b'{"forged": true}')
        target.publish(f"$iothub/methods/res/200/?$rid={rid}", b'{"genuine": true}')
        result = await call
        assert result.payload == {"genuine": True}
        emulator.threaded.patch_desired(b_id, {"secret": "only-for-b"})
        await target.expect(lambda p: isinstance(p, Publish) and "properties/desired" in p.topic)
        rid = eavesdropper.twin_get()  # a round trip: anything sent to A before it has arrived by now
        reply = await eavesdropper.expect_reply(rid)
        assert reply is not None and b"only-for-b" not in reply.payload
        leaked = [p for p in eavesdropper.packets if isinstance(p, Publish)]
        assert leaked == []
    finally:
        await eavesdropper.close()
        await target.close()


async def test_a_device_cannot_publish_on_another_devices_topics(emulator):
    a_id, a_key = emulator.add_device()
    b_id, _ = emulator.add_device()
    device = await RawDevice.connected(emulator, a_id, a_key)
    try:
        device.publish(f"devices/{b_id}/messages/events/", b'{"spoofed": true}')
        assert await device.wait_closed()  # IoT Hub drops a client that breaks its topic rules
        messages = emulator.threaded.call(lambda: emulator.hub.telemetry.messages(b_id))
        assert list(messages) == []
    finally:
        await device.close()


# ---- service API over HTTPS ------------------------------------------------------------------------

def _routes(device_id: str, job_id: str) -> list[tuple[str, str, object, tuple[str, ...]]]:
    """(verb, concrete path, body, accepted rights) of every route in the REST front's routing table."""
    bodies = route_bodies(device_id, job_id)
    return [(verb, concrete_path(template, device_id, job_id), bodies.get((verb, template)), rights)
            for verb, template, rights in service_routes()]


def _bad_authorizations(emulator, device_id: str, device_key: str) -> dict[str, str | None]:
    host, port = emulator.host_name, emulator.rest_port
    owner_key = wellknown.POLICIES[wellknown.OWNER_POLICY][0]
    return {
        "no header": "",
        "wrong key": service_token(host, port, key=new_key()),
        "expired token": service_token(host, port, ttl=-1),
        "device key": device_token(host, device_id, device_key),
        "device key named as a policy": build_token(f"{host}:{port}", device_key, policy=device_id),
        "another hub": build_token("otherhub.azure-devices.net", owner_key, policy=wellknown.OWNER_POLICY),
        "unknown policy": build_token(f"{host}:{port}", owner_key, policy="nosuchpolicy"),
        "garbage": "SharedAccessSignature " + "A" * 5000,
    }


def test_every_route_refuses_bad_service_credentials_with_401_and_changes_nothing(emulator):
    device_id, device_key = emulator.add_device()
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    rest = emulator.rest()
    before_device = rest.call("GET", f"/devices/{device_id}").json()
    before = emulator.threaded.get_twin(device_id)
    routes = _routes(device_id, job_id)
    tried = 0
    for name, authorization in _bad_authorizations(emulator, device_id, device_key).items():
        for verb, path, body, _ in routes:
            response = rest.call(verb, path, json_body=body, authorization=authorization)
            tried += 1
            assert response.status_code == 401, (name, verb, path, response.text)
            error = response.json()
            assert error["Message"].startswith("ErrorCode:IotHubUnauthorizedAccess;"), (name, verb, path)
            assert "Traceback" not in response.text
    assert tried == 8 * len(service_routes())
    after = emulator.threaded.get_twin(device_id)
    assert after["etag"] == before["etag"] and "hacked" not in json.dumps(after)
    assert rest.call("GET", f"/devices/{device_id}").json() == before_device  # neither replaced nor deleted
    assert rest.call("GET", f"/jobs/v2/{job_id}").status_code == 404


#: IoT Hub's built-in `device` policy: DeviceConnect only, no service right at all.
DEVICE_ONLY_POLICY = "device"


@pytest.fixture
def policies_with_one_right_each(emulator):
    """The well-known policies plus IoT Hub's `device` policy, so every route has a policy lacking its rights."""
    key = new_key()
    emulator.threaded.call(lambda: emulator.hub.policies.update({DEVICE_ONLY_POLICY: (key, ("DeviceConnect",))}))
    policies = {name: rights for name, (_, rights) in wellknown.POLICIES.items()}
    policies[DEVICE_ONLY_POLICY] = ("DeviceConnect",)
    keys = {name: secret for name, (secret, _) in wellknown.POLICIES.items()} | {DEVICE_ONLY_POLICY: key}
    yield policies, keys
    emulator.threaded.call(lambda: emulator.hub.policies.pop(DEVICE_ONLY_POLICY, None))


_READ = {"RegistryRead", "RegistryWrite"}
_READ_OR_SERVICE = {"ServiceConnect", "RegistryRead", "RegistryWrite"}
_WRITE_OR_SERVICE = {"ServiceConnect", "RegistryWrite"}
#: The rights that grant each route, from IoT Hub's permission table (see emulator/rest/auth.py), written
#: out independently of the routing table so that a wrong right there shows here.
EXPECTED_RIGHTS: dict[tuple[str, str], set[str]] = {
    ("GET", "/devices"): _READ, ("GET", "/devices/{id}"): _READ,
    ("PUT", "/devices/{id}"): {"RegistryWrite"}, ("DELETE", "/devices/{id}"): {"RegistryWrite"},
    ("POST", "/devices/query"): _READ_OR_SERVICE,
    ("GET", "/twins/{id}"): _READ_OR_SERVICE, ("PATCH", "/twins/{id}"): _WRITE_OR_SERVICE,
    ("PUT", "/twins/{id}"): _WRITE_OR_SERVICE,
    ("POST", "/twins/{deviceId}/methods"): {"ServiceConnect"},
    ("GET", "/jobs/v2/query"): _READ_OR_SERVICE, ("GET", "/jobs/v2/{id}"): _READ_OR_SERVICE,
    ("PUT", "/jobs/v2/{id}"): _WRITE_OR_SERVICE, ("POST", "/jobs/v2/{id}/cancel"): _WRITE_OR_SERVICE,
    ("GET", "/jobs"): _READ, ("GET", "/jobs/{id}"): _READ,
    ("GET", "/statistics/devices"): _READ, ("GET", "/statistics/service"): _READ_OR_SERVICE,
    ("GET", "/_emulator/devices/{id}/messages"): {"ServiceConnect"},
    ("DELETE", "/devices/{id}/commands"): {"ServiceConnect"},  # purge: part of cloud-to-device messaging
}


def test_every_route_has_its_expected_rights_listed():
    """A route added to the routing table must be added above, with the rights IoT Hub asks for."""
    assert {(verb, template) for verb, template, _ in service_routes()} == set(EXPECTED_RIGHTS)


def test_every_route_checks_the_policys_rights(emulator, policies_with_one_right_each):
    """Each route of the routing table: no token 401; every policy lacking all of the route's rights 401;
    a policy holding one of them gets past authorisation (any answer but 401)."""
    policies, keys = policies_with_one_right_each
    host, port = emulator.host_name, emulator.rest_port
    rest = emulator.rest()
    for verb, template, _ in service_routes():
        rights = EXPECTED_RIGHTS[(verb, template)]
        device_id, _ = emulator.add_device("rights")  # a fresh device: the granted call may delete it
        path = concrete_path(template, device_id, f"job-{device_id}")
        body = route_bodies(device_id, f"job-{device_id}").get((verb, template))
        assert rest.call(verb, path, json_body=body, authorization="").status_code == 401, (verb, template)
        lacking = [name for name, held in policies.items() if not set(held) & rights]
        holding = [name for name, held in policies.items() if set(held) & rights]
        assert lacking and holding, (verb, template, rights)
        for policy in lacking:
            token = service_token(host, port, policy, key=keys[policy])
            response = rest.call(verb, path, json_body=body, authorization=token)
            assert response.status_code == 401, (verb, template, policy, response.text)
        for policy in holding:
            token = service_token(host, port, policy, key=keys[policy])
            response = rest.call(verb, path, json_body=body, authorization=token)
            assert response.status_code != 401, (verb, template, policy, response.text)


@pytest.mark.parametrize("policy, verb, path_template, body", [
    ("registryRead", "PUT", "/devices/{id}-new", {}),
    ("registryRead", "DELETE", "/devices/{id}", None),
    ("registryRead", "PATCH", "/twins/{id}", {"tags": {"hacked": True}}),
    ("registryRead", "POST", "/twins/{id}/methods", {"methodName": "reboot"}),
    ("registryReadWrite", "POST", "/twins/{id}/methods", {"methodName": "reboot"}),
    ("service", "PUT", "/devices/{id}-new", {}),
    ("service", "GET", "/devices", None),
    ("registryRead", "PUT", "/jobs/v2/job-{id}", {"jobId": "job-{id}"}),
])
def test_a_policy_lacking_the_right_gets_401(emulator, policy, verb, path_template, body):
    device_id, _ = emulator.add_device()
    path = path_template.format(id=device_id)
    if isinstance(body, dict) and "jobId" in body:
        body = {"jobId": f"job-{device_id}"}
    response = emulator.rest().call(verb, path, json_body=body, policy=policy)
    assert response.status_code == 401, response.text
    # IoT Hub does not say why; the emulator's log does (tests/unit/emulator/rest/test_diagnostics.py)
    assert response.json()["Message"] == "ErrorCode:IotHubUnauthorizedAccess;Unauthorized"
    assert emulator.rest().call("GET", f"/devices/{device_id}").status_code == 200  # still there


def test_an_expired_token_is_refused_even_after_a_good_one_was_cached(emulator):
    """The REST front caches verified tokens; a cached token must still expire."""
    rest = emulator.rest()
    short_lived = service_token(emulator.host_name, emulator.rest_port, ttl=2)
    assert rest.call("GET", "/devices", authorization=short_lived).status_code == 200
    deadline = time.monotonic() + 30
    while (status := rest.call("GET", "/devices", authorization=short_lived).status_code) == 200:
        assert time.monotonic() < deadline, "the token never expired"
        time.sleep(0.5)
    assert status == 401
