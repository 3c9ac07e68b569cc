import pytest

from hubsettings import ConnectionStringError, mask_secrets, parse_connection_string
from hubsettings.connection_string import split_host_port

KEY = "8cc0Q0uyQZXpjwRZmcbS7ylk+eo0FLauFovl2gd1Vbc="
DEVICE = f"HostName=h.azure-devices.net;DeviceId=d1;SharedAccessKey={KEY}"
SERVICE = f"HostName=h.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"


def test_device_string_parses():
    cs = parse_connection_string(DEVICE, expect="device")
    assert (cs.kind, cs.host_name, cs.device_id, cs.shared_access_key) == ("device", "h.azure-devices.net", "d1", KEY)
    assert cs.raw == DEVICE


def test_service_string_with_port():
    cs = parse_connection_string(SERVICE.replace("h.azure-devices.net", "localhost:9443"), expect="service")
    assert cs.kind == "service" and cs.host == "localhost" and cs.port == 9443


@pytest.mark.parametrize("text, fragment", [
    ("", "is empty"),
    ("   ", "is empty"),
    (f"DeviceId=d1;SharedAccessKey={KEY}", "HostName is missing"),
    ("HostName=h;DeviceId=d1", "SharedAccessKey is missing"),
    ("HostName=h;DeviceId=d1;SharedAccessKey=", "SharedAccessKey is empty"),
    ("HostName=h;DeviceId=d1;SharedAccessKey=not*base64!", "not valid base64"),
    (f"HostName=h;SharedAccessKey={KEY}", "needs DeviceId"),
    (f"Hostname=h;DeviceId=d1;SharedAccessKey={KEY}", "did you mean HostName"),
    (f"HostName=h;DeviceId=d1;DeviceId=d2;SharedAccessKey={KEY}", "appears twice"),
    (f"HostName=h;DeviceId;SharedAccessKey={KEY}", "not of the form"),
    (f"HostName=h h;DeviceId=d;SharedAccessKey={KEY}", "is not a host name"),
    (f"HostName=h;DeviceId=d;x509=true", "x509"),
])
def test_bad_strings_name_the_part_and_never_echo_the_key(text, fragment):
    with pytest.raises(ConnectionStringError) as err:
        parse_connection_string(text)
    assert fragment in str(err.value)
    assert KEY not in str(err.value)


def test_kind_mismatch_is_explained():
    with pytest.raises(ConnectionStringError, match="service .*needs one with DeviceId"):
        parse_connection_string(SERVICE, expect="device")
    with pytest.raises(ConnectionStringError, match="device connection string"):
        parse_connection_string(DEVICE, expect="service")


def test_str_and_repr_mask_the_key():
    cs = parse_connection_string(DEVICE)
    for text in (str(cs), repr(cs), cs.masked()):
        assert KEY not in text and "DeviceId=d1" in text and "8cc0" in text


def test_mask_secrets_in_free_text():
    token = "SharedAccessSignature sr=h%2Fdevices%2Fd1&sig=abcdEFGHijkl%2B%3D&se=123"
    text = f"cs={DEVICE} token={token} {{\"primaryKey\": \"{KEY}\"}}"
    masked = mask_secrets(text)
    assert KEY not in masked and "abcdEFGHijkl" not in masked
    assert "DeviceId=d1" in masked and "se=123" in masked


@pytest.mark.parametrize("host, expected", [
    ("localhost", ("localhost", None)), ("localhost:9443", ("localhost", 9443)),
    ("[::1]:9443", ("::1", 9443)), ("127.0.0.5", ("127.0.0.5", None)),
])
def test_split_host_port(host, expected):
    assert split_host_port(host) == expected


@pytest.mark.parametrize("host, expected", [
    ("localhost", True), ("LOCALHOST", True), ("127.0.0.1", True), ("127.0.0.42", True), ("::1", True),
    ("[::1]", True), ("10.0.0.1", False), ("myhub.azure-devices.net", False), ("", False),
])
def test_is_loopback_host(host, expected):
    from hubsettings import is_loopback_host
    assert is_loopback_host(host) is expected
