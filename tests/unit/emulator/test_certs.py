"""Development CA and server certificate: created once, re-issued when a host is not covered; a TLS
client that verifies host names (as the device SDK does) accepts it. No sockets: TLS over memory BIOs."""

import ssl

import pytest
from cryptography import x509

from emulator.certs import ensure_certificates, server_ssl_context


def handshake(paths, server_hostname):
    """A full TLS handshake between a verifying client and our server context, in memory."""
    client_ctx = ssl.create_default_context(cadata=paths.ca_pem())
    client_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    server_ctx = server_ssl_context(paths)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, end, out, peer_in in (("client", client, c_out, s_in), ("server", server, s_out, c_in)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done.values()):
            return client.version()
    raise AssertionError("handshake did not finish")


def sans(path):
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
        str(v) for v in san.get_values_for_type(x509.IPAddress)}


def test_default_hosts_and_bound_address_are_covered(tmp_path):
    paths = ensure_certificates(tmp_path, ["127.0.0.42", "myhub.local"])
    assert {"localhost", "127.0.0.1", "::1", "127.0.0.42", "myhub.local"} <= sans(paths.server_cert)
    for host in ("localhost", "127.0.0.1", "127.0.0.42", "myhub.local"):
        assert handshake(paths, host) in ("TLSv1.2", "TLSv1.3")
    assert paths.ca_key.stat().st_mode & 0o077 == 0
    assert paths.server_key.stat().st_mode & 0o077 == 0


def test_uncovered_host_is_refused_by_a_verifying_client(tmp_path):
    paths = ensure_certificates(tmp_path)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(paths, "127.0.0.42")


def test_certificates_are_reused_and_reissued_only_when_needed(tmp_path):
    first = ensure_certificates(tmp_path, ["127.0.0.5"])
    ca, server = first.ca_cert.read_bytes(), first.server_cert.read_bytes()
    again = ensure_certificates(tmp_path, ["127.0.0.5"])
    assert again.server_cert.read_bytes() == server
    moved = ensure_certificates(tmp_path, ["127.0.0.6"])
    assert moved.ca_cert.read_bytes() == ca  # clients keep trusting the same CA
    assert moved.server_cert.read_bytes() != server
    assert "127.0.0.6" in sans(moved.server_cert)
    assert handshake(moved, "127.0.0.6")


def test_damaged_server_certificate_is_replaced(tmp_path):
    paths = ensure_certificates(tmp_path)
    paths.server_cert.write_text("garbage")
    assert handshake(ensure_certificates(tmp_path), "localhost")
