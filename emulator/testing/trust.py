"""Trust in the emulator's CA for SDKs that take no CA argument, through the environment, for a while.

SSL_CERT_FILE (Python's ssl default context: the device SDK without server_verification_cert) and
REQUESTS_CA_BUNDLE (requests: the service SDK) replace the default trust store, so they point at a bundle
of the usual public CAs plus the emulator's: other HTTPS calls of the test keep working.
NODE_EXTRA_CA_CERTS adds to Node's store, so it points at the emulator's CA alone.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TRUST_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")


def public_ca_file() -> Path | None:
    """The public CA bundle requests would use (certifi), else the system's OpenSSL one."""
    try:
        import certifi
        return Path(certifi.where())
    except ImportError:
        cafile = ssl.get_default_verify_paths().openssl_cafile
        return Path(cafile) if cafile and Path(cafile).is_file() else None


def write_bundle(ca_file: str | Path, path: Path) -> Path:
    """The public CAs followed by the emulator's CA, in one PEM file."""
    public = public_ca_file()
    parts = [public.read_text()] if public else []
    parts.append(Path(ca_file).read_text())
    path.write_text("\n".join(part.rstrip("\n") + "\n" for part in parts))
    return path


@contextmanager
def trusting(ca_file: str | Path, bundle_dir: Path) -> Iterator[Path]:
    """Set the trust variables for the duration of the block, then restore what was there (or nothing)."""
    bundle = write_bundle(ca_file, bundle_dir / "trust-bundle.pem")
    saved = {name: os.environ.get(name) for name in TRUST_VARIABLES}
    os.environ.update({"SSL_CERT_FILE": str(bundle), "REQUESTS_CA_BUNDLE": str(bundle),
                       "NODE_EXTRA_CA_CERTS": str(ca_file)})
    try:
        yield bundle
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
