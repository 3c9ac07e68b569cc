"""Masking of secrets in anything we print: keys, SAS signatures, whole tokens."""

from __future__ import annotations

import re

_PATTERNS = [
    # SharedAccessKey=<base64>   (connection strings)
    re.compile(r"(SharedAccessKey=)([^;\s\"']+)", re.IGNORECASE),
    # sig=<urlencoded base64>    (SAS tokens)
    re.compile(r"(\bsig=)([^&;\s\"']+)", re.IGNORECASE),
    # "primaryKey": "..." / "secondaryKey": "..." / symmetricKey: ...  (JSON and repr)
    re.compile(r"((?:primary|secondary|symmetric|group)_?Key[\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9+/=]{8,})", re.IGNORECASE),
]


def mask_key(key: str | None) -> str:
    """Show just enough of a key to tell two keys apart, never enough to use it."""
    if not key:
        return ""
    return f"{key[:4]}…({len(key)} chars)" if len(key) > 8 else "****"


def mask_secrets(text: str) -> str:
    """Return text with every key and signature it contains masked."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + mask_key(m.group(2)), text)
    return text
