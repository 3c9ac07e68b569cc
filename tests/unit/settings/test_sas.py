import base64
import hashlib
import hmac
import urllib.parse

import pytest

from hubsettings import SasError, build_token, derive_device_key, parse_token

KEY = base64.b64encode(b"k" * 32).decode()


def test_token_round_trip_and_signature_check():
    token = build_token("h/devices/d1", KEY, ttl=60, now=1000, policy=None)
    parsed = parse_token(token)
    assert parsed.resource_uri == "h/devices/d1" and parsed.expiry == 1060 and parsed.policy is None
    assert parsed.signature_matches(KEY)
    assert not parsed.signature_matches(base64.b64encode(b"x" * 32).decode())
    assert not parsed.is_expired(now=1059) and parsed.is_expired(now=1060)


def test_signature_matches_sdk_formula():
    # What azure-iot-device computes: sign the *encoded* sr.
    sr = urllib.parse.quote("h/devices/d1", safe="")
    expected = base64.b64encode(hmac.new(base64.b64decode(KEY), f"{sr}\n1060".encode(), hashlib.sha256).digest())
    token = build_token("h/devices/d1", KEY, ttl=60, now=1000)
    assert urllib.parse.quote(expected.decode(), safe="") in token


def test_group_key_derivation_matches_dps_docs():
    expected = base64.b64encode(hmac.new(base64.b64decode(KEY), b"sensor-1", hashlib.sha256).digest()).decode()
    assert derive_device_key(KEY, "sensor-1") == expected


@pytest.mark.parametrize("token", ["", "Bearer x", "SharedAccessSignature sr=a&se=1",
                                   "SharedAccessSignature sr=a&sig=b&se=soon", "SharedAccessSignature sr"])
def test_bad_tokens(token):
    with pytest.raises(SasError):
        parse_token(token)


def test_bad_key_never_matches():
    parsed = parse_token(build_token("h/devices/d1", KEY))
    assert not parsed.signature_matches("***")
