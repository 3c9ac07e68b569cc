"""Why a TLS handshake failed, in one line with the likely fix: what the emulator logs when a client
gives up before it ever speaks MQTT (the client itself often reports only "connection failed").

The reason comes from OpenSSL's error on the server side: an alert the client sent (it did not trust
or did not like the certificate), bytes that are not TLS at all (plain MQTT on the TLS port), or a
connection the client closed or reset mid-handshake (how many clients react to an untrusted CA).
"""

from __future__ import annotations

import ssl

__all__ = ["explain_handshake_failure"]

_TRUST_FIX = ("the client did not trust the emulator's CA: set SSL_CERT_FILE={ca} (Python device SDK), "
              "REQUESTS_CA_BUNDLE={ca} (service SDK, az), NODE_EXTRA_CA_CERTS={ca} (Node), or pass the CA "
              "file to the client (mosquitto: --cafile {ca})")

#: OpenSSL reason -> what it means and the likely fix ({ca}: the CA file to trust).
_BY_REASON = {
    "TLSV1_ALERT_UNKNOWN_CA": _TRUST_FIX,
    "SSLV3_ALERT_BAD_CERTIFICATE": _TRUST_FIX,
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": _TRUST_FIX + "; or the host name it dialled is not in the "
                                                    "certificate (start the emulator with --host-name)",
    "TLSV1_ALERT_ACCESS_DENIED": _TRUST_FIX,
    "WRONG_VERSION_NUMBER": "the client did not start TLS (plain MQTT?): IoT Hub takes MQTT over TLS only; "
                            "enable TLS in the client",
    "HTTP_REQUEST": "the client sent plain HTTP: use https:// (or wss://)",
    "UNSUPPORTED_PROTOCOL": "the client offered only a TLS version older than 1.2, which IoT Hub refuses",
    "NO_PROTOCOLS_AVAILABLE": "the client offered only a TLS version older than 1.2, which IoT Hub refuses",
    "NO_SHARED_CIPHER": "the client shares no cipher suite with the emulator (TLS 1.2+, ECDSA certificate)",
}

_CLOSED_FIX = ("the client closed the connection during the TLS handshake; if it reports a certificate "
               "problem, " + _TRUST_FIX)


def explain_handshake_failure(exc: BaseException | type[BaseException] | None, ca_file: str) -> str:
    """``exc``: what ended the handshake (an ssl.SSLError, a ConnectionError or its class, None for a
    plain close). Returns "<what happened>: <likely fix>"."""
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        what = f"TLS handshake failed ({reason or exc})"
        fix = _BY_REASON.get(reason)
        if fix is None:
            return f"{what}; check that the client speaks TLS 1.2+ and trusts {ca_file}"
        return f"{what}: {fix.format(ca=ca_file)}"
    if isinstance(exc, TimeoutError) or exc is TimeoutError:
        return "TLS handshake abandoned: the client sent nothing for too long"
    return f"TLS handshake abandoned: {_CLOSED_FIX.format(ca=ca_file)}"
