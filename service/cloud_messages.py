"""Cloud-to-device messages over AMQP: the azure-iot-hub SDK's own sender, made to trust our CA and to
tell why a send failed, and a feedback receiver (the SDK has none) on uamqp, which the SDK ships with.

IoT Hub takes these only over AMQP (TLS 5671 on the hub's host name). The SDK's sender reports any
refusal as "C2D message send failure"; the AMQP rejection it received (condition and description)
is kept on the uamqp message, which `SendOutcome` captures to turn into one of our typed errors.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from hubsettings import ServiceSettings
from hubsettings.sas import build_token

from .errors import (BadInput, HubUnreachable, NotFound, ServiceError, TlsFailure, Unauthorized,
                     WaitTimeout)

AMQPS_PORT = 5671
FEEDBACK_PATH = "/messages/servicebound/feedback"
TOKEN_TTL_S = 3600
MAX_MESSAGE_BYTES = 64 * 1024  # IoT Hub's limit, body and properties
CA_HINT = ("if the hub uses a private CA (the local emulator does), point IOTHUB_CA_FILE or --ca-file at its "
           "PEM (the emulator's is ~/.iothub-emulator/certs/ca.pem)")


def message_size(body: bytes, properties: dict[str, str]) -> int:
    return len(body) + sum(len(k.encode()) + len(str(v).encode()) for k, v in properties.items())


def trust_ca(manager: Any, ca_file: str | None) -> None:
    """Make the registry manager's AMQP sender trust `ca_file` (uamqp otherwise trusts certifi's
    bundle only, and the SDK offers no option). The TLS layer is rebuilt with the same host and port."""
    client = getattr(getattr(manager, "amqp_svc_client", None), "amqp_client", None)
    if not ca_file or client is None:
        return
    auth = client._auth
    auth.cert_file = ca_file
    auth.set_io(auth.hostname, None, None, client._transport_type)  # AMQP (5671) or over WebSockets (443)


class SendOutcome:
    """Captures the uamqp message the SDK queues, to read the hub's rejection after a failure."""

    def __init__(self, manager: Any):
        self.message: Any = None
        client = getattr(getattr(manager, "amqp_svc_client", None), "amqp_client", None)
        if client is None:
            return
        queue = client.queue_message

        def capture(*messages: Any) -> None:
            self.message = messages[-1] if messages else None
            queue(*messages)

        client.queue_message = capture

    def rejection(self) -> tuple[str, str] | None:
        """(AMQP condition, description) the hub rejected the message with, if it did."""
        response = getattr(self.message, "_response", None)
        condition = getattr(response, "condition", None) or getattr(response, "error_condition", None)
        if condition is None:
            return None
        description = getattr(response, "description", None) or b""
        return _text(getattr(condition, "value", condition)), _text(description)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def send(manager: Any, settings: ServiceSettings, device_id: str, body: bytes, properties: dict[str, str], *,
         message_id: str, correlation_id: str | None = None, content_type: str | None = None,
         content_encoding: str | None = None, expiry_time_ms: int | None = None, ack: str | None = None) -> None:
    """send_c2d_message of the SDK's registry manager, trusting the settings' CA (when it exists: as for
    REST), with a refusal turned into one of our typed errors."""
    ca_file = settings.ca_file
    trust_ca(manager, str(ca_file) if ca_file and ca_file.is_file() else None)
    sdk_properties: dict[str, Any] = dict(properties)
    system = {"messageId": message_id, "correlationId": correlation_id, "contentType": content_type,
              "contentEncoding": content_encoding, "expiryTimeUtc": expiry_time_ms, "iothub-ack": ack}
    sdk_properties.update({k: v for k, v in system.items() if v is not None})
    outcome = SendOutcome(manager)
    try:
        manager.send_c2d_message(device_id, body, sdk_properties)
    except Exception as e:  # noqa: BLE001 - the SDK raises a bare Exception; the rejection says why
        raise translate_send_failure(e, outcome, settings, device_id) from None
    finally:
        client = getattr(getattr(manager, "amqp_svc_client", None), "amqp_client", None)
        if client is not None:
            client.close()


def translate_send_failure(error: Exception, outcome: SendOutcome | None, settings: ServiceSettings,
                           device_id: str) -> ServiceError:
    """The SDK's failure (and the rejection behind it) as one of our typed errors."""
    host = settings.connection_string.host_name
    rejection = outcome.rejection() if outcome else None
    if rejection is not None:
        condition, description = rejection
        detail = description.split(";", 1)[-1].strip() or condition
        if condition == "amqp:not-found":
            return NotFound(f"device '{device_id}' not found on hub {host}")
        if condition == "amqp:resource-limit-exceeded":
            return ServiceError(f"device '{device_id}' has too many cloud-to-device messages waiting "
                                f"(DeviceMaximumQueueDepthExceeded: {detail}); purge its queue with "
                                f"`message purge {device_id}` or let it receive them")
        if condition == "amqp:link:message-size-exceeded":
            return BadInput(f"the message is too large for IoT Hub ({detail})")
        if condition == "amqp:unauthorized-access":
            return Unauthorized(f"the hub {host} refused the credentials: {detail} (the policy needs the "
                                "ServiceConnect right)")
        return ServiceError(f"the hub {host} refused the message ({condition}: {detail})")
    return amqp_connection_failure(error, settings)


def amqp_connection_failure(error: Exception, settings: ServiceSettings) -> ServiceError:
    """Why the AMQP connection failed, found by retrying its steps: TCP, TLS, then credentials."""
    import uamqp.errors

    host, _ = _amqp_endpoint(settings)
    if isinstance(error, uamqp.errors.AuthenticationException):
        reason = _text(getattr(error, "description", None) or _first_line(error))
        return Unauthorized(f"the hub {host} refused the credentials ({reason}): check the policy name, its key "
                            "and its ServiceConnect right in IOTHUB_CONNECTION_STRING")
    try:
        with socket.create_connection((host, AMQPS_PORT), timeout=5) as raw:
            context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
            with context.wrap_socket(raw, server_hostname=host):
                pass
    except ssl.SSLError as e:
        return TlsFailure(f"TLS with {host}:{AMQPS_PORT} failed ({e.reason or e}); {CA_HINT}")
    except OSError as e:
        hint = ("; is the local emulator running (it listens for AMQP on 5671)? Start it with `iothub-emulator`"
                if settings.is_emulator else "")
        return HubUnreachable(f"cannot reach the hub's AMQP endpoint {host}:{AMQPS_PORT} "
                              f"({e.strerror or e}){hint}")
    return ServiceError(f"cloud-to-device message to {host} failed: {_first_line(error)}")


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def _amqp_endpoint(settings: ServiceSettings) -> tuple[str, str]:
    """(host without port, the host name as in the connection string: the token's audience)."""
    cs = settings.connection_string
    return cs.host, cs.host_name


# ---- feedback ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeedbackRecord:
    original_message_id: str
    device_id: str
    status: str
    description: str
    enqueued_time: str

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> FeedbackRecord:
        return cls(str(item.get("originalMessageId", "")), str(item.get("deviceId", "")),
                   str(item.get("statusCode", "")), str(item.get("description", "")),
                   str(item.get("enqueuedTimeUtc", "")))


def _auth(settings: ServiceSettings) -> Any:
    """The SDK's token scheme (policy SAS for the hub, audience https://{HostName}), trusting our CA."""
    import uamqp
    from azure.core.credentials import AccessToken

    cs = settings.connection_string
    _, host_name = _amqp_endpoint(settings)

    def get_token() -> AccessToken:
        expiry = int(time.time()) + TOKEN_TTL_S
        token = build_token(host_name, cs.shared_access_key or "", ttl=TOKEN_TTL_S,
                            policy=cs.shared_access_key_name, now=expiry - TOKEN_TTL_S)
        return AccessToken(token, expiry)

    auth = uamqp.authentication.JWTTokenAuth(
        audience=f"https://{host_name}", uri=f"https://{host_name}", get_token=get_token,
        token_type=b"servicebus.windows.net:sastoken",
        verify=str(settings.ca_file) if settings.ca_file and settings.ca_file.is_file() else None)
    auth.update_token()
    return auth


def receive_feedback(settings: ServiceSettings, until: Callable[[FeedbackRecord], bool], timeout: float,
                     *, monotonic: Callable[[], float] = time.monotonic) -> Iterator[FeedbackRecord]:
    """Feedback records from the hub's feedback queue as they arrive, until `until(record)` is true or
    `timeout` seconds pass (then WaitTimeout). Every batch received is accepted (taken off the queue)."""
    import uamqp

    host, _ = _amqp_endpoint(settings)
    client = uamqp.ReceiveClient(f"amqps://{host}{FEEDBACK_PATH}", auth=_auth(settings), timeout=0,
                                 prefetch=10)
    deadline = monotonic() + timeout
    try:
        while True:
            remaining = deadline - monotonic()
            if remaining <= 0:
                raise WaitTimeout(f"no feedback arrived within {timeout:g} s (the device must be connected and "
                                  "receive the message; raise --timeout)")
            try:
                batch = client.receive_message_batch(max_batch_size=10, timeout=int(min(remaining, 5) * 1000))
            except ServiceError:
                raise
            except Exception as e:  # noqa: BLE001 - uamqp raises many kinds; explain the connection
                raise amqp_connection_failure(e, settings) from None
            for message in batch:
                records = _records(message)
                message.accept()
                for record in records:
                    yield record
                    if until(record):
                        return
    finally:
        client.close()


def _records(message: Any) -> list[FeedbackRecord]:
    try:
        body = b"".join(bytes(part) for part in message.get_data())
        items = json.loads(body)
    except (ValueError, TypeError):
        return []
    return [FeedbackRecord.from_json(item) for item in items if isinstance(item, dict)]
