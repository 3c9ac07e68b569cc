"""Device and service SAS authentication, and DPS attestation/registration."""

import pytest

from emulator.hub import DeviceDisabled, DeviceNotFound, FakeClock, Hub, IotHubUnauthorizedAccess
from emulator.hub.errors import ArgumentInvalid, DeviceAlreadyExists
from emulator.hub.provisioning import IndividualEnrollment
from hubsettings import build_token, derive_device_key, parse_token, wellknown

KEY = "8cc0Q0uyQZXpjwRZmcbS7ylk+eo0FLauFovl2gd1Vbc="
OTHER_KEY = "GE5K8DIILj1gEg6WNcmgqJyQsWkphPUMZ9ZOESClIbs="


@pytest.fixture
def clock():
    return FakeClock(1_700_000_000)


@pytest.fixture
def hub(clock):
    hub = Hub("localhost", clock=clock, host_aliases=("127.0.0.1",))
    hub.register_well_known()
    hub.create_device("d1", primary_key=KEY, secondary_key=OTHER_KEY)
    return hub


def token(resource, key=KEY, ttl=3600, now=1_700_000_000, policy=None):
    return build_token(resource, key, ttl=ttl, now=now, policy=policy)


@pytest.mark.parametrize("resource", ["localhost/devices/d1", "localhost:8883/devices/d1", "LOCALHOST/devices/d1",
                                      "127.0.0.1/devices/d1"])
def test_valid_tokens_are_accepted(hub, resource):
    assert hub.authenticate_device("d1", token(resource)).device_id == "d1"


def test_secondary_key_works_too(hub):
    hub.authenticate_device("d1", token("localhost/devices/d1", key=OTHER_KEY))


@pytest.mark.parametrize("resource", ["otherhost/devices/d1", "localhost/devices/d2", "localhost/devices/d1/x",
                                      "localhost", "localhost:abc/devices/d1"])
def test_token_must_name_this_hub_and_device(hub, resource):
    with pytest.raises(IotHubUnauthorizedAccess):
        hub.authenticate_device("d1", token(resource))


def test_expired_token_is_refused(hub, clock):
    text = token("localhost/devices/d1", ttl=60)
    clock.advance(60)
    with pytest.raises(IotHubUnauthorizedAccess, match="expired"):
        hub.authenticate_device("d1", text)


def test_wrong_key_garbage_unknown_and_disabled(hub):
    wrong = derive_device_key(KEY, "x")
    with pytest.raises(IotHubUnauthorizedAccess, match="signature"):
        hub.authenticate_device("d1", token("localhost/devices/d1", key=wrong))
    with pytest.raises(IotHubUnauthorizedAccess):
        hub.authenticate_device("d1", "not a token")
    with pytest.raises(DeviceNotFound):
        hub.authenticate_device("ghost", token("localhost/devices/ghost"))
    hub.update_device("d1", status="disabled")
    with pytest.raises(DeviceDisabled):
        hub.authenticate_device("d1", token("localhost/devices/d1"))


def test_service_policies_and_rights(hub):
    owner_key = wellknown.POLICIES["iothubowner"][0]
    read_key = wellknown.POLICIES["registryRead"][0]
    assert hub.authenticate_service(token("localhost:9443", owner_key, policy="iothubowner"),
                                    "ServiceConnect") == "iothubowner"
    with pytest.raises(IotHubUnauthorizedAccess, match="lacks"):
        hub.authenticate_service(token("localhost", read_key, policy="registryRead"), "RegistryWrite")
    with pytest.raises(IotHubUnauthorizedAccess):
        hub.authenticate_service(token("localhost", read_key, policy="iothubowner"), "RegistryRead")
    with pytest.raises(IotHubUnauthorizedAccess):
        hub.authenticate_service(token("localhost", owner_key, policy="nosuch"), "RegistryRead")


def dps_token(registration_id, key, scope=wellknown.DPS_ID_SCOPE):
    return parse_token(token(f"{scope}/registrations/{registration_id}", key))


def test_group_enrollment_creates_the_device_with_the_derived_key(hub):
    derived = derive_device_key(wellknown.DPS_GROUP_KEY, "sensor-1")
    state = hub.register_device(wellknown.DPS_ID_SCOPE, "sensor-1", dps_token("sensor-1", derived))
    assert state.to_json()["assignedHub"] == "localhost"
    assert state.to_json()["status"] == "assigned" and state.device_id == "sensor-1"
    assert hub.get_device("sensor-1").primary_key == derived
    hub.authenticate_device("sensor-1", token("localhost/devices/sensor-1", derived))
    again = hub.register_device(wellknown.DPS_ID_SCOPE, "sensor-1", dps_token("sensor-1", derived))
    assert again.created == state.created  # re-registration keeps the device


def test_group_key_itself_or_another_ids_key_is_refused(hub):
    with pytest.raises(IotHubUnauthorizedAccess):
        hub.register_device(wellknown.DPS_ID_SCOPE, "s2", dps_token("s2", wellknown.DPS_GROUP_KEY))
    other = derive_device_key(wellknown.DPS_GROUP_KEY, "s3")
    with pytest.raises(IotHubUnauthorizedAccess):
        hub.register_device(wellknown.DPS_ID_SCOPE, "s2", dps_token("s2", other))
    with pytest.raises(IotHubUnauthorizedAccess, match="scope"):
        hub.register_device("0ne0000OTHER", "s3", dps_token("s3", other, scope="0ne0000OTHER"))
    with pytest.raises(ArgumentInvalid):
        hub.register_device(wellknown.DPS_ID_SCOPE, "bad id!", dps_token("bad id!", other))
    assert "s2" not in hub.registry


def test_individual_enrollment_wins_and_can_name_another_device(hub):
    hub.add_enrollment(IndividualEnrollment("reg-1", OTHER_KEY, device_id="device-for-reg-1"))
    state = hub.register_device(wellknown.DPS_ID_SCOPE, "reg-1", dps_token("reg-1", OTHER_KEY))
    assert state.device_id == "device-for-reg-1"
    with pytest.raises(IotHubUnauthorizedAccess):  # the group-derived key no longer applies to reg-1
        hub.register_device(wellknown.DPS_ID_SCOPE, "reg-1",
                            dps_token("reg-1", derive_device_key(wellknown.DPS_GROUP_KEY, "reg-1")))


def test_dps_cannot_rekey_a_device_it_did_not_create(hub):
    # d1 was created through the registry with private keys: the public group key must not take it over.
    derived = derive_device_key(wellknown.DPS_GROUP_KEY, "d1")
    with pytest.raises(DeviceAlreadyExists) as info:
        hub.register_device(wellknown.DPS_ID_SCOPE, "d1", dps_token("d1", derived))
    assert (info.value.error_code, info.value.http_status) == (409001, 409)
    device = hub.get_device("d1")
    assert (device.primary_key, device.secondary_key) == (KEY, OTHER_KEY)
    with pytest.raises(IotHubUnauthorizedAccess):
        hub.authenticate_device("d1", token("localhost/devices/d1", derived))
    assert "d1" not in hub.registrations


def test_dps_assigns_a_device_that_already_holds_the_attested_key(hub):
    derived = derive_device_key(wellknown.DPS_GROUP_KEY, "pre-made")
    hub.create_device("pre-made", primary_key=derived)
    state = hub.register_device(wellknown.DPS_ID_SCOPE, "pre-made", dps_token("pre-made", derived))
    assert state.device_id == "pre-made" and hub.get_device("pre-made").primary_key == derived


def test_dps_rekeys_only_the_device_its_own_registration_created(hub):
    hub.add_enrollment(IndividualEnrollment("reg-1", OTHER_KEY, device_id="dev-1"))
    hub.register_device(wellknown.DPS_ID_SCOPE, "reg-1", dps_token("reg-1", OTHER_KEY))
    assert hub.get_device("dev-1").primary_key == OTHER_KEY
    hub.add_enrollment(IndividualEnrollment("reg-1", KEY, device_id="dev-1"))  # the enrollment's key changes
    hub.register_device(wellknown.DPS_ID_SCOPE, "reg-1", dps_token("reg-1", KEY))
    device = hub.get_device("dev-1")
    assert device.primary_key == OTHER_KEY and device.secondary_key == KEY  # primary kept, new key valid
    # Another registration (the group one for registration id dev-1) did not create dev-1: refused.
    with pytest.raises(DeviceAlreadyExists):
        hub.register_device(wellknown.DPS_ID_SCOPE, "dev-1",
                            dps_token("dev-1", derive_device_key(wellknown.DPS_GROUP_KEY, "dev-1")))


def test_a_deleted_dps_device_recreated_by_the_service_is_not_dps_s_any_more(hub):
    derived = derive_device_key(wellknown.DPS_GROUP_KEY, "s9")
    hub.register_device(wellknown.DPS_ID_SCOPE, "s9", dps_token("s9", derived))
    hub.delete_device("s9")
    hub.create_device("s9", primary_key=KEY, secondary_key=OTHER_KEY)
    with pytest.raises(DeviceAlreadyExists):
        hub.register_device(wellknown.DPS_ID_SCOPE, "s9", dps_token("s9", derived))
    assert hub.get_device("s9").secondary_key == OTHER_KEY


def test_dps_registrations_survive_a_restart(tmp_path, clock):
    from emulator.store import SqliteStore
    first = Hub("localhost", store=SqliteStore.in_directory(tmp_path), clock=clock)
    first.add_enrollment(IndividualEnrollment("reg-1", OTHER_KEY, device_id="dev-1"))
    first.register_device(wellknown.DPS_ID_SCOPE, "reg-1", dps_token("reg-1", OTHER_KEY))
    first.close()
    second = Hub("localhost", store=SqliteStore.in_directory(tmp_path), clock=clock)
    try:
        assert second.registrations["reg-1"].device_id == "dev-1"
        second.add_enrollment(IndividualEnrollment("reg-1", KEY, device_id="dev-1"))
        second.register_device(wellknown.DPS_ID_SCOPE, "reg-1", dps_token("reg-1", KEY))  # still DPS's device
        assert second.get_device("dev-1").secondary_key == KEY
    finally:
        second.close()


def test_an_operation_may_accept_any_of_several_rights(hub):
    read_key = wellknown.POLICIES["registryRead"][0]
    read_token = token("localhost", read_key, policy="registryRead")
    assert hub.authenticate_service(read_token, ("ServiceConnect", "RegistryRead")) == "registryRead"
    with pytest.raises(IotHubUnauthorizedAccess, match="lacks the ServiceConnect or RegistryWrite right"):
        hub.authenticate_service(read_token, ("ServiceConnect", "RegistryWrite"))


def test_a_remembered_token_is_still_checked_for_expiry_and_rights(hub, clock, monkeypatch):
    owner = token("localhost", wellknown.POLICIES["iothubowner"][0], policy="iothubowner", ttl=60)
    assert hub.authenticate_service(owner, "ServiceConnect") == "iothubowner"
    from hubsettings.sas import SasToken
    monkeypatch.setattr(SasToken, "signature_matches", lambda self, key: pytest.fail("verified twice"))
    assert hub.authenticate_service(owner, "RegistryWrite") == "iothubowner"  # remembered: no HMAC
    hub.policies["iothubowner"] = (hub.policies["iothubowner"][0], ("RegistryRead",))
    with pytest.raises(IotHubUnauthorizedAccess, match="lacks"):
        hub.authenticate_service(owner, "ServiceConnect")
    clock.advance(61)
    with pytest.raises(IotHubUnauthorizedAccess, match="expired"):
        hub.authenticate_service(owner, "RegistryRead")
