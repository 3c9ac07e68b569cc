"""Shared access signatures as IoT Hub and DPS use them (one implementation for every side).

Token: ``SharedAccessSignature sr={quote(resource)}&sig={quote(b64(HMAC-SHA256(key, sr + "\\n" + se)))}&se={expiry}[&skn={policy}]``.
The signed string uses the *encoded* resource URI, as the SDKs do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
import urllib.parse
from dataclasses import dataclass


class SasError(ValueError):
    """A key or token that cannot be used; the message never contains the key."""


def _key_bytes(key_b64: str) -> bytes:
    try:
        return base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError):
        raise SasError("the key is not valid base64") from None


def sign(key_b64: str, message: str) -> str:
    """base64(HMAC-SHA256(b64decode(key), message))."""
    digest = hmac.new(_key_bytes(key_b64), message.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def derive_device_key(group_key_b64: str, registration_id: str) -> str:
    """The per-device key of a DPS symmetric-key group enrollment."""
    return sign(group_key_b64, registration_id)


def build_token(resource_uri: str, key_b64: str, *, ttl: int = 3600, policy: str | None = None,
                now: float | None = None) -> str:
    """A SAS token for resource_uri (unencoded, e.g. ``myhub.azure-devices.net/devices/d1``)."""
    expiry = int((time.time() if now is None else now) + ttl)
    encoded = urllib.parse.quote(resource_uri, safe="")
    sig = urllib.parse.quote(sign(key_b64, f"{encoded}\n{expiry}"), safe="")
    token = f"SharedAccessSignature sr={encoded}&sig={sig}&se={expiry}"
    return token + (f"&skn={policy}" if policy else "")


@dataclass(frozen=True)
class SasToken:
    resource_uri: str  # decoded
    encoded_resource_uri: str  # as sent, used in the signature
    signature: str  # decoded base64
    expiry: int
    policy: str | None

    def is_expired(self, now: float | None = None) -> bool:
        return self.expiry <= (time.time() if now is None else now)

    def signature_matches(self, key_b64: str) -> bool:
        """Constant-time check of the signature against key_b64 (a bad key never matches)."""
        try:
            expected = sign(key_b64, f"{self.encoded_resource_uri}\n{self.expiry}")
        except SasError:
            return False
        return hmac.compare_digest(expected.encode(), self.signature.encode())


def parse_token(token: str) -> SasToken:
    """Parse a ``SharedAccessSignature sr=..&sig=..&se=..[&skn=..]`` string."""
    prefix = "SharedAccessSignature "
    if not token or not token.startswith(prefix):
        raise SasError("not a SharedAccessSignature token")
    fields: dict[str, str] = {}
    for part in token[len(prefix):].split("&"):
        name, sep, value = part.partition("=")
        if not sep or name in fields:
            raise SasError("malformed SharedAccessSignature token")
        fields[name] = value
    missing = [name for name in ("sr", "sig", "se") if name not in fields]
    if missing:
        raise SasError(f"SharedAccessSignature token lacks {', '.join(missing)}")
    try:
        expiry = int(fields["se"])
    except ValueError:
        raise SasError("SharedAccessSignature token has a non-numeric se") from None
    return SasToken(
        resource_uri=urllib.parse.unquote(fields["sr"]),
        encoded_resource_uri=fields["sr"],
        signature=urllib.parse.unquote(fields["sig"]),
        expiry=expiry,
        policy=fields.get("skn"),
    )
