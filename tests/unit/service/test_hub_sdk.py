"""The real SDK managers against loopback sockets: CA trust, TLS failures, an unreachable hub.

No fakes here: these prove that the settings reach requests and that real SDK exceptions are mapped.
"""

from __future__ import annotations

import socket
from pathlib import Path

from click.testing import CliRunner

from hubsettings import parse_connection_string
from hubsettings.resolve import ServiceSettings
from service.cli import cli
from service.context import AppState
from service.hub import SdkManagerFactory

from .fakes import SERVICE_KEY


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), obj=AppState(tty=False), catch_exceptions=False)


def service_cs(host: str) -> str:
    return f"HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={SERVICE_KEY}"


def test_untrusted_certificate_is_a_tls_error_with_a_hint(loopback_hub):
    host = loopback_hub.host
    result = invoke("twin", "show", "nobody", "--login", service_cs(host))
    assert result.exit_code == 13, result.output
    assert result.stderr.startswith(f"Error: TLS with {host} failed (certificate verify failed)")
    assert "IOTHUB_CA_FILE" in result.stderr


def test_ca_file_is_trusted_and_hub_errors_are_mapped(loopback_hub):
    host = loopback_hub.host
    result = invoke("twin", "show", "nobody", "--login", service_cs(host), "--ca-file", str(loopback_hub.ca_file))
    assert result.exit_code == 4, result.output
    assert result.stderr.strip() == f"Error: device 'nobody' not found on hub {host}"


def test_closed_port_is_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    result = invoke("device", "show", "d1", "--login", service_cs(f"127.0.0.1:{port}"))
    assert result.exit_code == 12, result.output
    assert result.stderr.strip() == (f"Error: cannot reach the IoT hub at 127.0.0.1:{port} (connection refused); "
                                     "is the local emulator running? Start it with `iothub-emulator`")


def settings(host: str, ca: Path | None) -> ServiceSettings:
    return ServiceSettings(parse_connection_string(service_cs(host), expect="service"), ca, "test")


def test_factory_sets_verify_only_for_an_existing_ca_file(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    factory = SdkManagerFactory()
    registry = factory.registry_manager(settings("myhub.azure-devices.net", ca))
    jobs = factory.job_manager(settings("myhub.azure-devices.net", ca))
    assert registry.protocol.config.connection.verify == str(ca)
    assert jobs.protocol.config.connection.verify == str(ca)
    missing = factory.registry_manager(settings("myhub.azure-devices.net", tmp_path / "missing.pem"))
    assert missing.protocol.config.connection.verify is True


def test_factory_skips_hopeless_retries_on_loopback_only():
    factory = SdkManagerFactory()
    local = factory.job_manager(settings("localhost:9443", None)).protocol.config.retry_policy.policy
    azure = factory.job_manager(settings("myhub.azure-devices.net", None)).protocol.config.retry_policy.policy
    assert local.connect == 0 and local.other == 0
    assert azure.connect == 3 and azure.other is None  # the SDK's defaults
