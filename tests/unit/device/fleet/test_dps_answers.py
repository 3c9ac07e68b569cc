"""How the fleet's DPS client reads DPS's answers (scripted, no network): 202 is polled by operation id
after retry-after, 429 waits and asks again, 200 names the hub, refusals map to the SDK's errors."""

import pytest
from azure.iot.device import exceptions as sdk_errors

from device.fleet.dps_client import ProvisioningClient
from device.fleet.link import FleetLink
from device.fleet.pacing import Gate
from hubsettings import ProvisioningSettings, derive_device_key, wellknown

ASSIGNED = {"operationId": "op1", "status": "assigned",
            "registrationState": {"assignedHub": "hub.example.test", "deviceId": "d1", "substatus": "initialAssignment"}}


def client_answering(*answers, link=None):
    settings = ProvisioningSettings("dps.example.test", wellknown.DPS_ID_SCOPE, "d1",
                                    derive_device_key(wellknown.DPS_GROUP_KEY, "d1"), from_group_key=True)
    link = link or FleetLink(hub_gate=Gate(1, None), dps_gate=Gate(1, None))
    client = ProvisioningClient(settings, None, link)
    asked = []
    script = list(answers)

    async def ask(connection, topic_for, body):
        asked.append(topic_for("7"))
        return script.pop(0)
    client._ask = ask
    return client, asked, link


async def test_assigning_is_polled_by_operation_id_and_throttling_waits(monkeypatch):
    sleeps = []

    async def sleep(seconds):
        sleeps.append(seconds)
    monkeypatch.setattr("device.fleet.dps_client.asyncio.sleep", sleep)
    client, asked, link = client_answering(
        (429, {"retry-after": "2"}, {"errorCode": 429001, "message": "throttled"}),
        (202, {"retry-after": "1"}, {"operationId": "op1", "status": "assigning"}),
        (200, {}, ASSIGNED))
    result = await client._register(object())
    assert result.status == "assigned" and result.registration_state.assigned_hub == "hub.example.test"
    assert result.registration_state.device_id == "d1"
    assert asked[0].startswith("$dps/registrations/PUT/iotdps-register/?$rid=")
    assert asked[1].startswith("$dps/registrations/PUT/iotdps-register/")  # asked again after the 429
    assert "iotdps-get-operationstatus/?$rid=7&operationId=op1" in asked[2]
    assert 1.0 <= sleeps[0] <= 3.0 and sleeps[1] == 1.0  # retry-after, with jitter on throttling
    assert link.stats.throttled == 1 and link.stats.registrations == 1


@pytest.mark.parametrize("status, error", [(401, sdk_errors.CredentialError), (403, sdk_errors.ServiceError),
                                           (404, sdk_errors.ServiceError), (500, sdk_errors.ClientError)])
async def test_refusals_map_to_what_the_listener_sorts(status, error):
    client, _, _ = client_answering((status, {}, {"errorCode": status * 1000 + 1, "message": "no"}))
    with pytest.raises(error) as raised:
        await client._register(object())
    assert type(raised.value) is error and f"{status} {status * 1000 + 1}: no" in str(raised.value)
