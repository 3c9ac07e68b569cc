"""message send / purge with a fake registry manager shaped like azure-iot-hub's: what reaches the SDK, the
output, and one-line errors with their exit codes (the AMQP rejection behind the SDK's bare Exception)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from service import cloud_messages
from service import hub as hub_module
from service.cli import cli
from service.cloud_messages import FeedbackRecord
from service.context import AppState
from service.errors import ExitCode, WaitTimeout

from .fakes import HOST, http_error


class FakeAmqpClient:
    """uamqp.SendClient as the SDK uses it: messages are queued, then sent (and maybe rejected)."""

    def __init__(self):
        self.queued: list = []
        self.closed = 0

    def queue_message(self, *messages):
        self.queued.extend(messages)

    def close(self):
        self.closed += 1


class FakeC2DManager:
    def __init__(self):
        self.amqp_svc_client = SimpleNamespace(amqp_client=FakeAmqpClient())
        self.sent: list[tuple] = []
        self.rejection: tuple[bytes, bytes] | None = None
        self.purge_error: Exception | None = None
        self.protocol = SimpleNamespace(cloud_to_device_messages=SimpleNamespace(
            purge_cloud_to_device_message_queue=self._purge))

    def send_c2d_message(self, device_id, message, properties={}):  # noqa: B006 - the SDK's signature
        self.sent.append((device_id, message, dict(properties)))
        uamqp_message = SimpleNamespace(_response=None)
        self.amqp_svc_client.amqp_client.queue_message(uamqp_message)
        if self.rejection:
            condition, description = self.rejection
            uamqp_message._response = SimpleNamespace(condition=condition, description=description)
            raise Exception("C2D message send failure")

    def _purge(self, device_id):
        if self.purge_error:
            raise self.purge_error
        return {"totalMessagesPurged": 3, "deviceId": device_id, "moduleId": None}


@pytest.fixture
def manager(monkeypatch):
    manager = FakeC2DManager()
    factory = SimpleNamespace(registry_manager=lambda settings: manager, job_manager=lambda settings: None)
    monkeypatch.setattr(hub_module, "manager_factory", factory)
    return manager


def run(*args: str):
    state = AppState(clock=lambda: 0.0, sleep=lambda s: None, tty=False)
    return CliRunner().invoke(cli, list(args), obj=state, catch_exceptions=False)


def test_send_passes_body_properties_and_system_properties_to_the_sdk(manager, monkeypatch):
    monkeypatch.setattr("time.time", lambda: 1_000.0)
    result = run("--json", "message", "send", "d1", "hello", "-p", "zone=3", "--property", "a=b=c",
                 "--message-id", "m1", "--correlation-id", "c1", "--content-type", "application/json",
                 "--content-encoding", "utf-8", "--ttl", "60", "--ack", "full")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"deviceId": "d1", "messageId": "m1", "queued": True}
    [(device_id, body, properties)] = manager.sent
    assert (device_id, body) == ("d1", b"hello")
    assert properties == {"zone": "3", "a": "b=c", "messageId": "m1", "correlationId": "c1",
                          "contentType": "application/json", "contentEncoding": "utf-8",
                          "expiryTimeUtc": 1_060_000, "iothub-ack": "full"}
    assert manager.amqp_svc_client.amqp_client.closed == 1


def test_send_reads_the_body_from_a_file_and_makes_up_a_message_id(manager, tmp_path):
    (tmp_path / "body.bin").write_bytes(b"\x00\x01binary")
    result = run("message", "send", "d1", f"@{tmp_path / 'body.bin'}")
    assert result.exit_code == 0, result.output
    [(_, body, properties)] = manager.sent
    assert body == b"\x00\x01binary" and "iothub-ack" not in properties
    assert f"Message {properties['messageId']} queued for d1 (8 bytes)" in result.stdout


@pytest.mark.parametrize("args, text", [
    (("-p", "novalue"), "--property wants KEY=VALUE"),
    (("-p", "iothub-ack=full"), "reserved by IoT Hub"),
    (("--wait-feedback",), "--wait-feedback needs --ack"),
    (("@/no/such/file",), "cannot read the message body"),
])
def test_bad_input_is_one_line_and_exit_2_without_calling_the_hub(manager, args, text):
    result = run("message", "send", "d1", *args)
    assert result.exit_code == ExitCode.USAGE
    assert text in result.stderr and result.stderr.count("\n") == 1
    assert manager.sent == []


def test_oversized_message_is_refused_before_sending(manager):
    result = run("message", "send", "d1", "x" * (64 * 1024 + 1))
    assert result.exit_code == ExitCode.USAGE and "at most 65536" in result.stderr
    assert manager.sent == []


@pytest.mark.parametrize("condition, description, code, text", [
    (b"amqp:not-found", b"ErrorCode:DeviceNotFound;Device d1 not registered", ExitCode.NOT_FOUND,
     f"Error: device 'd1' not found on hub {HOST}"),
    (b"amqp:resource-limit-exceeded", b"ErrorCode:DeviceMaximumQueueDepthExceeded;50 waiting",
     ExitCode.HUB_ERROR, "DeviceMaximumQueueDepthExceeded: 50 waiting"),
    (b"amqp:unauthorized-access", b"ErrorCode:IotHubUnauthorizedAccess;no right", ExitCode.UNAUTHORIZED,
     "refused the credentials: no right"),
    (b"amqp:link:message-size-exceeded", b"ErrorCode:MessageTooLarge;too big", ExitCode.USAGE, "too large"),
    (b"amqp:internal-error", b"boom", ExitCode.HUB_ERROR, "refused the message (amqp:internal-error: boom)"),
])
def test_hub_rejections_become_one_line_errors(manager, condition, description, code, text):
    manager.rejection = (condition, description)
    result = run("message", "send", "d1", "hi")
    assert result.exit_code == code
    assert text in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_uamqp_error_codes_are_read_by_value(manager):
    from uamqp.constants import ErrorCodes
    manager.rejection = (ErrorCodes.NotFound, b"ErrorCode:DeviceNotFound;gone")
    assert run("message", "send", "d1", "hi").exit_code == ExitCode.NOT_FOUND


def test_wait_feedback_prints_the_record_for_this_message(manager, monkeypatch):
    seen = []

    def fake_receive(settings, until, timeout):
        seen.append(timeout)
        for record in (FeedbackRecord("other", "d9", "Expired", "Message expired", "t0"),
                       FeedbackRecord("m1", "d1", "Success", "Success", "t1")):
            yield record
            if until(record):
                return

    monkeypatch.setattr(cloud_messages, "receive_feedback", fake_receive)
    result = run("message", "send", "d1", "hi", "--message-id", "m1", "--ack", "full", "--wait-feedback",
                 "--timeout", "5")
    assert result.exit_code == 0, result.output
    assert seen == [5.0]
    assert "Feedback: Success (Success) at t1" in result.stdout


def test_wait_feedback_timeout_exits_14(manager, monkeypatch):
    def no_feedback(settings, until, timeout):
        raise WaitTimeout("no feedback arrived within 1 s")
        yield  # a generator, like the real one

    monkeypatch.setattr(cloud_messages, "receive_feedback", no_feedback)
    result = run("message", "send", "d1", "hi", "--ack", "positive", "--wait-feedback", "--timeout", "1")
    assert result.exit_code == ExitCode.WAIT_TIMEOUT and "no feedback" in result.stderr


def test_purge_reports_the_count(manager):
    assert run("message", "purge", "d1").stdout.strip() == "Purged 3 messages waiting for d1"
    assert json.loads(run("--json", "message", "purge", "d1").stdout)["totalMessagesPurged"] == 3


def test_purge_of_an_unknown_device_exits_4(manager):
    manager.purge_error = http_error(404, {"Message": "ErrorCode:DeviceNotFound;Device d1 not registered"})
    result = run("message", "purge", "d1")
    assert result.exit_code == ExitCode.NOT_FOUND and f"device 'd1' not found on hub {HOST}" in result.stderr


# ---- why an AMQP connection failed: the steps are retried for real, on loopback ----------------------------

def amqp_settings(host: str, ca_file=None):
    from pathlib import Path

    from hubsettings import ServiceSettings, parse_connection_string
    from hubsettings.wellknown import POLICIES
    cs = parse_connection_string(f"HostName={host};SharedAccessKeyName=iothubowner;"
                                 f"SharedAccessKey={POLICIES['iothubowner'][0]}", expect="service")
    return ServiceSettings(cs, Path(ca_file) if ca_file else None, "test")


def test_refused_credentials_carry_the_hubs_reason():
    from uamqp.errors import TokenAuthFailure
    error = cloud_messages.amqp_connection_failure(
        TokenAuthFailure(401, b"Policy registryRead lacks the ServiceConnect right"), amqp_settings("hub.test"))
    assert error.exit_code == ExitCode.UNAUTHORIZED
    assert "(Policy registryRead lacks the ServiceConnect right)" in error.message


def test_nothing_listening_is_unreachable():
    from emulator.loopback import free_loopback_address
    host = free_loopback_address((cloud_messages.AMQPS_PORT,), fall_back_to_127_0_0_1=True)
    error = cloud_messages.amqp_connection_failure(Exception("Connection in an unexpected error state"),
                                                   amqp_settings(host))
    assert error.exit_code == ExitCode.UNREACHABLE and f"{host}:5671" in error.message


def test_an_untrusted_certificate_is_a_tls_failure(tmp_path):
    import socket
    import ssl
    import threading

    from emulator.certs import ensure_certificates, server_ssl_context
    from emulator.loopback import free_loopback_address
    host = free_loopback_address((cloud_messages.AMQPS_PORT,), fall_back_to_127_0_0_1=True)
    ours = ensure_certificates(tmp_path / "ours", [host])
    other = ensure_certificates(tmp_path / "other", [host])  # another CA: what the client trusts
    with socket.create_server((host, cloud_messages.AMQPS_PORT)) as listener:
        def serve_one() -> None:
            conn, _ = listener.accept()
            with conn:
                try:
                    server_ssl_context(ours).wrap_socket(conn, server_side=True).close()
                except (ssl.SSLError, OSError):
                    pass
        thread = threading.Thread(target=serve_one, daemon=True)
        thread.start()
        error = cloud_messages.amqp_connection_failure(Exception("x"), amqp_settings(host, other.ca_cert))
        thread.join(10)
    assert error.exit_code == ExitCode.TLS and "CERTIFICATE_VERIFY_FAILED" in error.message


def test_a_ca_file_not_written_yet_is_left_out_as_for_rest(monkeypatch, tmp_path):
    """The emulator's default CA path before it ever started: trusting it would fail before connecting."""
    trusted = []
    monkeypatch.setattr(cloud_messages, "trust_ca", lambda m, ca: trusted.append(ca))
    manager = FakeC2DManager()
    factory = SimpleNamespace(registry_manager=lambda settings: manager, job_manager=lambda settings: None)
    settings = amqp_settings("localhost", tmp_path / "never-written.pem")
    hub_module.HubClient(settings, factory).send_message("d1", b"x", {}, message_id="m1")
    (ca_file := tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----")
    hub_module.HubClient(amqp_settings("localhost", ca_file), factory).send_message("d1", b"x", {}, message_id="m2")
    assert trusted == [None, str(ca_file)]
