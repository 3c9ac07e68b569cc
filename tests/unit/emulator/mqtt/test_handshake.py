"""One line per failed TLS handshake, with the likely fix."""

import ssl

import pytest

from emulator.mqtt.handshake import explain_handshake_failure

CA = "/data/certs/ca.pem"


def _ssl_error(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] something")
    error.reason = reason
    return error


@pytest.mark.parametrize("reason", ["TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE",
                                    "SSLV3_ALERT_CERTIFICATE_UNKNOWN"])
def test_an_untrusted_ca_names_the_trust_variable_of_each_client(reason):
    line = explain_handshake_failure(_ssl_error(reason), CA)
    assert reason in line
    for fix in (f"SSL_CERT_FILE={CA}", f"REQUESTS_CA_BUNDLE={CA}", f"NODE_EXTRA_CA_CERTS={CA}", f"--cafile {CA}"):
        assert fix in line


def test_plain_bytes_say_tls_is_needed():
    assert "did not start TLS" in explain_handshake_failure(_ssl_error("WRONG_VERSION_NUMBER"), CA)


def test_an_unknown_reason_still_says_what_to_check():
    line = explain_handshake_failure(_ssl_error("SOMETHING_NEW"), CA)
    assert "SOMETHING_NEW" in line and CA in line


@pytest.mark.parametrize("exc", [ConnectionResetError, ConnectionResetError("reset"), None])
def test_a_client_that_hangs_up_mid_handshake_is_told_about_trust(exc):
    line = explain_handshake_failure(exc, CA)
    assert line.startswith("TLS handshake abandoned") and f"SSL_CERT_FILE={CA}" in line


def test_a_timeout_is_named():
    assert "sent nothing for too long" in explain_handshake_failure(TimeoutError, CA)
