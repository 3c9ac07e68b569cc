"""The real SDK clients are built as the listener needs them (no network: building connects nothing)."""

import datetime

import pytest
from azure.iot.device import exceptions as sdk_errors
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from device.errors import SettingsProblem
from device.sdk import HubIdentity, SdkClientFactory, describe_error, is_credential_error, is_transient

KEY = "8cc0Q0uyQZXpjwRZmcbS7ylk+eo0FLauFovl2gd1Vbc="


@pytest.fixture(scope="module")
def ca_pem():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


async def test_hub_client_trusts_the_ca_and_leaves_desired_state_to_the_listener(ca_pem):
    client = SdkClientFactory().hub_client(
        HubIdentity("hub.example.test", "d1", connection_string=f"HostName=hub.example.test;DeviceId=d1;SharedAccessKey={KEY}"),
        ca_pem)
    try:
        config = client._mqtt_pipeline._nucleus.pipeline_configuration
        assert config.server_verification_cert == ca_pem
        assert config.ensure_desired_properties is False  # the listener reads the twin itself
        assert (config.hostname, config.device_id) == ("hub.example.test", "d1")
    finally:
        await client.shutdown()


async def test_hub_client_from_a_provisioned_key_uses_system_trust_without_a_ca():
    client = SdkClientFactory().hub_client(HubIdentity("assigned.example.test", "sim-001", symmetric_key=KEY), None)
    try:
        config = client._mqtt_pipeline._nucleus.pipeline_configuration
        assert config.server_verification_cert is None
        assert (config.hostname, config.device_id) == ("assigned.example.test", "sim-001")
    finally:
        await client.shutdown()


def test_a_damaged_ca_is_a_settings_problem():
    damaged = "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n"
    with pytest.raises(SettingsProblem, match="CA certificate"):
        SdkClientFactory().hub_client(HubIdentity("h", "d", symmetric_key=KEY), damaged)


def test_error_classification():
    assert is_credential_error(sdk_errors.CredentialError()) and not is_transient(sdk_errors.CredentialError())
    assert is_transient(sdk_errors.ConnectionFailedError()) and is_transient(sdk_errors.OperationTimeout())
    assert not is_transient(ValueError("bug"))


def test_describe_error_finds_the_innermost_reason():
    outer = sdk_errors.ConnectionFailedError()
    middle = RuntimeError("transport")
    middle.__cause__ = ConnectionRefusedError(111, "Connection refused")
    outer.__cause__ = middle
    assert describe_error(outer) == "[Errno 111] Connection refused"
    assert describe_error(sdk_errors.ConnectionFailedError()) == "ConnectionFailedError"
