"""Reading device telemetry from a hub's built-in Event Hubs-compatible endpoint (the only module that
uses azure-eventhub).

The endpoint is found as the az extension and Microsoft's samples find it: open a receiver on the hub's
own AMQP endpoint (`messages/events/$management`, SASL PLAIN with a policy token) and read the
`amqp:link:redirect` IoT Hub answers with: its hostname and address give the Event Hubs endpoint and
entity path, and the policy key is the same. Or the caller gives the Event Hubs-compatible connection
string. The same code reads Azure and the local emulator.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hubsettings import ServiceSettings
from hubsettings.sas import build_token

from .errors import BadInput, HubUnreachable, NotFound, ServiceError, TlsFailure, Unauthorized, WaitTimeout

# Their warnings (a link detached, a retry) are turned into our one-line errors; keep them off stderr.
for _name in ("uamqp", "azure.eventhub"):
    logging.getLogger(_name).addHandler(logging.NullHandler())

AMQPS_PORT = 5671
REDIRECT_SOURCE = "messages/events/$management"
TOKEN_TTL_S = 3600
POLL_S = 1.0  # how often a quiet receive checks its deadline
BATCH_SIZE = 1000  # events taken from a partition per visit
# azure-eventhub's synchronous consumer visits its partitions in turn, blocking up to its socket timeout
# (0.2 s by default) on each quiet one and taking one event per visit: with the default, a message
# waits behind every quiet partition's timeout and monitor falls seconds behind at 20 msg/s. A short
# timeout keeps a message's wait to tens of milliseconds (a partly read frame is kept across timeouts).
SOCKET_TIMEOUT_S = 0.02


@dataclass(frozen=True)
class EventHubEndpoint:
    """An Event Hubs-compatible connection string, split as azure-eventhub needs it: the Endpoint's
    port (when not 5671) goes to `custom_endpoint_address`."""

    connection_string: str
    custom_endpoint_address: str | None = None

    @classmethod
    def parse(cls, text: str) -> EventHubEndpoint:
        fields = dict(part.split("=", 1) for part in text.strip().strip(";").split(";") if "=" in part)
        endpoint = fields.get("Endpoint", "")
        parsed = urllib.parse.urlsplit(endpoint)
        if parsed.scheme != "sb" or not parsed.hostname or "EntityPath" not in fields \
                or "SharedAccessKey" not in fields or "SharedAccessKeyName" not in fields:
            raise BadInput("the Event Hubs-compatible connection string must look like Endpoint=sb://HOST/;"
                           "SharedAccessKeyName=NAME;SharedAccessKey=KEY;EntityPath=HUB")
        if parsed.port in (None, AMQPS_PORT):
            return cls(text.strip())
        fields["Endpoint"] = f"sb://{parsed.hostname}/"
        return cls(";".join(f"{k}={v}" for k, v in fields.items()), f"sb://{parsed.hostname}:{parsed.port}")

    @property
    def entity_path(self) -> str:
        return dict(p.split("=", 1) for p in self.connection_string.split(";") if "=" in p)["EntityPath"]


def discover(settings: ServiceSettings, *, timeout: float = 30) -> EventHubEndpoint:
    """Follow the hub's redirect to its Event Hubs-compatible endpoint (uamqp, as the az extension)."""
    import uamqp
    from uamqp import authentication, errors

    cs = settings.connection_string
    host = cs.host
    token = build_token(cs.host_name, cs.shared_access_key or "", ttl=TOKEN_TTL_S, policy=cs.shared_access_key_name)
    verify = str(settings.ca_file) if settings.ca_file and settings.ca_file.is_file() else None
    # CBS (a put-token the hub answers 401 with its reason), as the az extension does.
    auth = authentication.SASTokenAuth(cs.host_name, f"amqps://{host}/{REDIRECT_SOURCE}", token,
                                       expires_at=time.time() + TOKEN_TTL_S, port=AMQPS_PORT, verify=verify)
    client = uamqp.ReceiveClient(f"amqps://{host}/{REDIRECT_SOURCE}", auth=auth, timeout=int(timeout * 1000),
                                 prefetch=1)
    try:
        client.receive_message_batch(max_batch_size=1)
    except errors.LinkRedirect as redirect:
        return _from_redirect(redirect, cs.shared_access_key_name or "", cs.shared_access_key or "")
    except errors.AuthenticationException as e:
        raise Unauthorized(f"the hub {host} refused the credentials ({_first_line(e)}): the policy needs the "
                           "ServiceConnect right") from None
    except Exception as e:  # noqa: BLE001 - uamqp raises many kinds; tell the reachable from the rest
        raise _connection_failure(host, AMQPS_PORT, verify, e, settings.is_emulator) from None
    finally:
        client.close()
    raise ServiceError(f"the hub {host} did not redirect to its Event Hubs-compatible endpoint; give it with "
                       "--event-hub-connection-string")


def _from_redirect(redirect: Any, policy: str, key: str) -> EventHubEndpoint:
    info = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in (redirect.info or {}).items()}
    text = {k: v.decode() if isinstance(v, bytes) else v for k, v in info.items()}
    address = urllib.parse.urlsplit(str(text.get("address", "")))
    hostname = str(text.get("hostname") or address.hostname or "")
    entity = urllib.parse.unquote(address.path.strip("/").split("/", 1)[0])
    if not hostname or not entity:
        raise ServiceError(f"the hub's redirect names no Event Hubs endpoint ({text}); give it with "
                           "--event-hub-connection-string")
    port = int(text.get("port") or address.port or AMQPS_PORT)
    endpoint = hostname if port == AMQPS_PORT else f"{hostname}:{port}"
    return EventHubEndpoint.parse(f"Endpoint=sb://{endpoint}/;SharedAccessKeyName={policy};"
                                  f"SharedAccessKey={key};EntityPath={entity}")


def check_consumer_group(endpoint: EventHubEndpoint, consumer_group: str, ca_file: str | None) -> None:
    """Open partition 0 of `consumer_group` once (uamqp) so that a consumer group that does not exist
    fails as NotFound: azure-eventhub's consumer retries such a refusal without reporting it."""
    import uamqp
    from uamqp import authentication, errors
    from uamqp.address import Source

    fields = dict(p.split("=", 1) for p in endpoint.connection_string.split(";") if "=" in p)
    netloc = urllib.parse.urlsplit(endpoint.custom_endpoint_address or fields["Endpoint"]).netloc
    host, _, port_text = netloc.partition(":")
    group = urllib.parse.quote(consumer_group, safe="$")
    address = f"amqps://{netloc}/{endpoint.entity_path}/ConsumerGroups/{group}/Partitions/0"
    auth = authentication.SASTokenAuth.from_shared_access_key(
        f"sb://{host}/{endpoint.entity_path}", fields["SharedAccessKeyName"], fields["SharedAccessKey"],
        port=int(port_text or AMQPS_PORT), verify=ca_file)
    source = Source(address)
    source.set_filter(b"amqp.annotation.x-opt-offset > '@latest'")
    client = uamqp.ReceiveClient(source, auth=auth, timeout=2000, prefetch=1)
    try:
        client.receive_message_batch(max_batch_size=1, timeout=1000)
    except errors.AuthenticationException as e:
        raise Unauthorized(f"the Event Hubs-compatible endpoint {netloc} refused the credentials "
                           f"({_first_line(e)}): the policy needs the ServiceConnect right") from None
    except errors.AMQPConnectionError as e:
        condition = _text(getattr(getattr(e, "condition", None), "value", getattr(e, "condition", "")))
        if "not-found" in str(condition) or "not-found" in str(e):
            raise NotFound(f"consumer group '{consumer_group}' not found on event hub {endpoint.entity_path} "
                           f"({_text(getattr(e, 'description', '')) or _first_line(e)})") from None
        raise HubUnreachable(f"cannot read from the Event Hubs-compatible endpoint {netloc} ({_first_line(e)})") \
            from None
    finally:
        client.close()


# ---- reading -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Telemetry:
    """One device-to-cloud message as read from the endpoint."""

    device_id: str
    enqueued_time: dt.datetime | None
    partition: str
    sequence_number: int
    offset: str
    body: bytes
    properties: dict[str, str] = field(default_factory=dict)  # the device's application properties
    system_properties: dict[str, Any] = field(default_factory=dict)  # IoT Hub's, and the AMQP ones


def _text(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return value


def to_telemetry(partition: str, event: Any) -> Telemetry:
    system = {str(_text(k)): _text(v) for k, v in (event.system_properties or {}).items()}
    properties = {str(_text(k)): str(_text(v)) for k, v in (event.properties or {}).items()}
    body = b"".join(bytes(part) for part in event.body) if not isinstance(event.body, bytes) else event.body
    return Telemetry(str(system.get("iothub-connection-device-id", "")), event.enqueued_time, partition,
                     int(event.sequence_number), str(event.offset), body, properties, system)


def starting_position(start: str) -> tuple[Any, bool]:
    """--start: earliest, latest or a time (ISO 8601; no zone means UTC) -> azure-eventhub's
    starting_position and whether it is inclusive."""
    if start == "earliest":
        return "-1", False
    if start == "latest":
        return "@latest", False
    try:
        moment = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"--start takes earliest, latest or an ISO 8601 time (2024-05-01T12:00:00Z), "
                       f"not '{start[:60]}'") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)), True


class Monitor:
    """Receive from every partition until `count` messages were handed to `on_message`, `timeout`
    seconds pass, or the first error (raised as one of our typed errors)."""

    def __init__(self, endpoint: EventHubEndpoint, *, ca_file: str | None, consumer_group: str = "$Default",
                 checkpoint_store: Any = None):
        self.endpoint = endpoint
        self._ca_file = ca_file
        self._consumer_group = consumer_group
        self._checkpoint_store = checkpoint_store
        self._lock = threading.Lock()
        self._error: BaseException | None = None

    def client(self) -> Any:
        from azure.eventhub import EventHubConsumerClient, TransportType

        options: dict[str, Any] = {"consumer_group": self._consumer_group, "retry_total": 1,
                                   "socket_timeout": SOCKET_TIMEOUT_S}
        if self._ca_file:
            options["connection_verify"] = self._ca_file
        if self.endpoint.custom_endpoint_address:
            options["custom_endpoint_address"] = self.endpoint.custom_endpoint_address
            options["transport_type"] = TransportType.Amqp
        if self._checkpoint_store is not None:
            options["checkpoint_store"] = self._checkpoint_store
        return EventHubConsumerClient.from_connection_string(self.endpoint.connection_string, **options)

    def run(self, on_message: Callable[[Telemetry], bool], *, start: str = "latest", timeout: float | None = None,
            count: int | None = None, monotonic: Callable[[], float] = time.monotonic) -> int:
        """`on_message` returns whether the message counts (a device filter). Returns how many did."""
        position, inclusive = starting_position(start)
        client = self.client()
        deadline = None if timeout is None else monotonic() + timeout
        taken = 0
        finished = threading.Event()

        def on_events(context: Any, events: list[Any]) -> None:
            nonlocal taken
            with self._lock:
                for event in events:
                    if finished.is_set():
                        return
                    if on_message(to_telemetry(context.partition_id, event)):
                        taken += 1
                        if self._checkpoint_store is not None:
                            context.update_checkpoint(event)
                    if count is not None and taken >= count:
                        finished.set()
                if deadline is not None and monotonic() >= deadline:
                    finished.set()
            if finished.is_set():
                client.close()

        def on_error(context: Any, error: BaseException) -> None:
            with self._lock:
                if self._error is None:
                    self._error = error
                finished.set()
            client.close()

        try:
            # Probe first: a wrong key, an unreachable host or a bad TLS CA fails here, as one error.
            client.get_partition_ids()
            # In batches: azure-eventhub visits the partitions in turn, and one event per visit could not
            # keep up with a busy device or a backlog (tens of messages a second in all).
            client.receive_batch(on_event_batch=on_events, on_error=on_error, starting_position=position,
                                 starting_position_inclusive=inclusive, max_batch_size=BATCH_SIZE,
                                 prefetch=BATCH_SIZE, max_wait_time=POLL_S)
        except Exception as e:  # noqa: BLE001 - azure-eventhub's errors are translated below
            self._error = self._error or e
        finally:
            client.close()
        if self._error is not None:
            raise translate(self._error, self.endpoint, self._consumer_group, self._ca_file) from None
        if count is not None and taken < count:
            raise WaitTimeout(f"{taken} of {count} message(s) arrived within {timeout:g} s")
        return taken


def translate(error: BaseException, endpoint: EventHubEndpoint, consumer_group: str,
              ca_file: str | None) -> ServiceError:
    """azure-eventhub's exception as one of our typed errors, one line."""
    from azure.eventhub import exceptions

    where = endpoint.custom_endpoint_address or _endpoint_host(endpoint.connection_string)
    text = _first_line(error)
    lowered = text.lower()
    if isinstance(error, exceptions.AuthenticationError) or "unauthorized" in lowered or "401" in lowered:
        return Unauthorized(f"the Event Hubs-compatible endpoint {where} refused the credentials ({text}): the "
                            "policy needs the ServiceConnect right")
    if "consumer group" in lowered or ("not-found" in lowered and "consumergroup" in lowered.replace(" ", "")):
        return NotFound(f"consumer group '{consumer_group}' not found on event hub {endpoint.entity_path} ({text})")
    if "not-found" in lowered or "could not be found" in lowered or "does not exist" in lowered:
        return NotFound(f"not found on the Event Hubs-compatible endpoint {where}: {text}")
    if "certificate" in lowered or "ssl" in lowered:
        return TlsFailure(f"TLS with {where} failed ({text}); if the hub uses a private CA (the local emulator "
                          "does), point IOTHUB_CA_FILE or --ca-file at its PEM")
    if isinstance(error, (exceptions.ConnectError, exceptions.ConnectionLostError)) or "connection" in lowered:
        return HubUnreachable(f"cannot reach the Event Hubs-compatible endpoint {where} ({text})")
    return ServiceError(f"reading telemetry from {where} failed: {text}")


def _connection_failure(host: str, port: int, ca_file: str | None, error: BaseException,
                        is_emulator: bool) -> ServiceError:
    import socket
    import ssl

    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            context = ssl.create_default_context(cafile=ca_file)
            with context.wrap_socket(raw, server_hostname=host):
                pass
    except ssl.SSLError as e:
        return TlsFailure(f"TLS with {host}:{port} failed ({e.reason or e}); if the hub uses a private CA (the "
                          "local emulator does), point IOTHUB_CA_FILE or --ca-file at its PEM")
    except OSError as e:
        hint = "; is the local emulator running? Start it with `iothub-emulator`" if is_emulator else ""
        return HubUnreachable(f"cannot reach the hub's AMQP endpoint {host}:{port} ({e.strerror or e}){hint}")
    return ServiceError(f"finding the hub's Event Hubs-compatible endpoint failed: {_first_line(error)}")


def _endpoint_host(connection_string: str) -> str:
    fields = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    return urllib.parse.urlsplit(fields.get("Endpoint", "")).netloc


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
