"""The development CA and server certificate, generated on first start into <data dir>/certs/.

Devices verify the hub (CERT_REQUIRED, check_hostname), so they are given ca.pem. The CA is kept
across restarts (clients keep trusting it); the server certificate is re-issued whenever it does not
cover a host name or address the emulator is reached by, or is close to expiry.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
SERVER_CERT_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
CA_LIFETIME = dt.timedelta(days=3650)
SERVER_LIFETIME = dt.timedelta(days=825)  # the longest lifetime clients such as macOS accept
RENEW_BEFORE = dt.timedelta(days=30)


class CertificateError(RuntimeError):
    """The certificate directory cannot be used."""


@dataclass(frozen=True)
class CertificatePaths:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path

    def ca_pem(self) -> str:
        return self.ca_cert.read_text()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _split_hosts(hosts: Iterable[str]) -> tuple[set[str], set[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    names, addresses = set(), set()
    for host in hosts:
        host = host.strip("[]")
        if not host or host in ("0.0.0.0", "::"):
            continue  # wildcard binds are reached by other names, which callers list explicitly
        try:
            addresses.add(ipaddress.ip_address(host))
        except ValueError:
            names.add(host.lower())
    return names, addresses


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _create_ca(paths: CertificatePaths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "IoT Hub emulator development CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "iothub-lab (development only)")])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_private(paths.ca_key, _key_pem(key))
    paths.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _load_ca(paths: CertificatePaths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.not_valid_after_utc - RENEW_BEFORE < _now():
        return None
    return cert, key


def _server_cert_fits(paths: CertificatePaths, ca: x509.Certificate, hosts: Iterable[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
        serialization.load_pem_private_key(paths.server_key.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    if cert.not_valid_after_utc - RENEW_BEFORE < _now():
        return False
    names, addresses = _split_hosts(hosts)
    covered_names = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    covered_addresses = set(san.get_values_for_type(x509.IPAddress))
    return names <= covered_names and addresses <= covered_addresses


def _create_server_cert(paths: CertificatePaths, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
                        hosts: Iterable[str]) -> None:
    names, addresses = _split_hosts(hosts)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in sorted(names)]
    sans += [x509.IPAddress(a) for a in sorted(addresses, key=str)]
    common_name = sorted(names)[0] if names else "localhost"
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + SERVER_LIFETIME)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_private(paths.server_key, _key_pem(key))
    paths.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_certificates(cert_dir: Path, hosts: Iterable[str] = ()) -> CertificatePaths:
    """Make sure cert_dir holds a CA and a server certificate covering DEFAULT_HOSTS plus `hosts`."""
    wanted = [*DEFAULT_HOSTS, *hosts]
    paths = CertificatePaths(cert_dir / CA_FILE, cert_dir / CA_KEY_FILE, cert_dir / SERVER_CERT_FILE,
                             cert_dir / SERVER_KEY_FILE)
    try:
        cert_dir.mkdir(parents=True, exist_ok=True)
        loaded = _load_ca(paths)
        if loaded is None:
            loaded = _create_ca(paths)
            fits = False
        else:
            fits = _server_cert_fits(paths, loaded[0], wanted)
        if not fits:
            _create_server_cert(paths, loaded[0], loaded[1], wanted)
    except OSError as e:
        raise CertificateError(f"cannot write certificates to {cert_dir}: {e.strerror or e}") from None
    return paths


class ServerContext(ssl.SSLContext):
    """An SSLContext that knows which CA file clients must trust (for the listeners' hints)."""

    ca_file: str = ""


def server_ssl_context(paths: CertificatePaths) -> ServerContext:
    """TLS 1.2+ server context with the emulator's certificate (and the CA as its chain)."""
    context = ServerContext(ssl.PROTOCOL_TLS_SERVER)
    context.ca_file = str(paths.ca_cert)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(paths.server_cert, paths.server_key)
    return context
