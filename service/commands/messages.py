"""message send / purge: cloud-to-device messages, sent over AMQP as IoT Hub requires."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import click

from ..cloud_messages import MAX_MESSAGE_BYTES, message_size
from ..context import app_state, global_options
from ..errors import BadInput

ACK_CHOICES = ("none", "positive", "negative", "full")
#: IoT Hub keeps a message at most 2 days; a message's own expiry cannot be later.
MAX_TTL_S = 2 * 24 * 3600


def read_body(text: str | None) -> bytes:
    """BODY as UTF-8, or @FILE's bytes; empty when not given."""
    if text is None:
        return b""
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            return path.read_bytes()
        except OSError as e:
            raise BadInput(f"cannot read the message body from {path}: {e.strerror or e}") from None
    return text.encode("utf-8")


def parse_properties(pairs: tuple[str, ...]) -> dict[str, str]:
    properties: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--property wants KEY=VALUE, not '{pair[:80]}'")
        if key.strip().lower().startswith("iothub-") or key.startswith("$"):
            raise BadInput(f"property '{key[:80]}' is reserved by IoT Hub; use the matching option (--ack, ...)")
        properties[key.strip()] = value
    return properties


@click.group()
@global_options
def message() -> None:
    """Send cloud-to-device messages to a device, or purge the ones waiting for it."""


@message.command("send")
@click.argument("device_id", metavar="DEVICE")
@click.argument("body", metavar="[BODY|@FILE]", required=False)
@click.option("--property", "-p", "properties", multiple=True, metavar="KEY=VALUE",
              help="An application property (repeatable).")
@click.option("--message-id", default=None, help="Message id. Default: a new UUID.")
@click.option("--correlation-id", default=None, help="Correlation id.")
@click.option("--content-type", default=None, help="Content type, e.g. application/json.")
@click.option("--content-encoding", default=None, help="Content encoding, e.g. utf-8.")
@click.option("--ttl", type=click.IntRange(1, MAX_TTL_S), default=None, metavar="SECONDS",
              help="Seconds until the message expires if the device has not taken it (at most 2 days). "
                   "Default: the hub's (1 hour).")
@click.option("--ack", type=click.Choice(ACK_CHOICES), default="none", show_default=True,
              help="Which delivery feedback the hub reports: positive (delivered), negative (expired, "
                   "rejected, too many attempts), full (both).")
@click.option("--wait-feedback", is_flag=True,
              help="Wait for the feedback on this message (needs --ack other than none). The hub has one "
                   "feedback queue: feedback on other messages that arrives meanwhile is taken off it too.")
@click.option("--timeout", type=click.FloatRange(min=0), default=60, show_default=True,
              help="Seconds to wait for feedback (exit code 14 when none arrives).")
@global_options
def send(device_id: str, body: str | None, properties: tuple[str, ...], message_id: str | None,
         correlation_id: str | None, content_type: str | None, content_encoding: str | None, ttl: int | None,
         ack: str, wait_feedback: bool, timeout: float) -> None:
    """Send a message to DEVICE. IoT Hub keeps it until the device receives it or it expires.

    BODY is the message text; @FILE sends a file's bytes.
    """
    payload = read_body(body)
    app_properties = parse_properties(properties)
    if wait_feedback and ack == "none":
        raise BadInput("--wait-feedback needs --ack positive, negative or full (with none the hub sends none)")
    size = message_size(payload, app_properties)
    if size > MAX_MESSAGE_BYTES:
        raise BadInput(f"the message is {size} bytes; IoT Hub takes at most {MAX_MESSAGE_BYTES} "
                       "(body and properties)")
    message_id = message_id or str(uuid.uuid4())
    expiry_ms = int((time.time() + ttl) * 1000) if ttl else None
    state = app_state()
    hub, out = state.hub(), state.output()
    hub.send_message(device_id, payload, app_properties, message_id=message_id, correlation_id=correlation_id,
                     content_type=content_type, content_encoding=content_encoding, expiry_time_ms=expiry_ms,
                     ack=None if ack == "none" else ack)
    report: dict = {"deviceId": device_id, "messageId": message_id, "queued": True}
    if not out.json_mode:
        out.line(f"Message {message_id} queued for {device_id} ({len(payload)} bytes)")
    if wait_feedback:
        with out.spinner(f"Waiting for feedback on message {message_id} (up to {timeout:g} s)"):
            record = hub.wait_for_feedback(message_id, timeout)
        report["feedback"] = {"statusCode": record.status, "description": record.description,
                              "enqueuedTimeUtc": record.enqueued_time}
        if not out.json_mode:
            out.line(f"Feedback: {record.status} ({record.description}) at {record.enqueued_time}")
    if out.json_mode:
        out.json(report)


@message.command("purge")
@click.argument("device_id", metavar="DEVICE")
@global_options
def purge(device_id: str) -> None:
    """Drop every cloud-to-device message waiting for DEVICE."""
    state = app_state()
    result = state.hub().purge_messages(device_id)
    out = state.output()
    if out.json_mode:
        out.json(result)
    else:
        count = result.get("totalMessagesPurged", 0)
        out.line(f"Purged {count} message{'s' if count != 1 else ''} waiting for {device_id}")
