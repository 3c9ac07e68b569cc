"""The only module that touches azure.iot.hub: SDK calls in, plain JSON-shaped dicts and typed errors out.

`import azure.iot.hub` pulls in uamqp and is slow, so it happens lazily, on the first call that needs the
network; --help and commands that fail on bad input never pay for it. Tests replace `manager_factory`
with fakes of IoTHubRegistryManager / IoTHubJobManager.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

from hubsettings import ServiceSettings, is_loopback_host

from .errors import (AlreadyExists, DeviceOffline, EtagMismatch, HubUnreachable, MethodTimeout,
                     NotFound, ServiceError, SettingsProblem, Throttled, TlsFailure, Unauthorized)

THROTTLE_RETRIES = 3  # 429 is never retried by msrest; we retry a bounded number of times
THROTTLE_BACKOFF_S = (1.0, 2.0, 4.0)
MAX_RETRY_AFTER_S = 30.0
CA_HINT = ("if the hub uses a private CA (the local emulator does), point IOTHUB_CA_FILE or --ca-file "
           "at its PEM (the emulator's is ~/.iothub-emulator/certs/ca.pem)")


class ManagerFactory(Protocol):
    def registry_manager(self, settings: ServiceSettings) -> Any: ...
    def job_manager(self, settings: ServiceSettings) -> Any: ...


class SdkManagerFactory:
    """Builds the real SDK managers, trusting settings.ca_file explicitly."""

    def registry_manager(self, settings: ServiceSettings) -> Any:
        from azure.iot.hub import IoTHubRegistryManager
        return _configured(IoTHubRegistryManager.from_connection_string(settings.connection_string.raw),
                           settings)

    def job_manager(self, settings: ServiceSettings) -> Any:
        from azure.iot.hub import IoTHubJobManager
        return _configured(IoTHubJobManager.from_connection_string(settings.connection_string.raw),
                           settings)


def _configured(manager: Any, settings: ServiceSettings) -> Any:
    config = manager.protocol.config
    # Set verify per manager rather than relying on REQUESTS_CA_BUNDLE, which some machines set globally.
    # A CA path that does not exist (emulator never started) is left out: requests would fail with an
    # OSError before even trying to connect, hiding the real problem (nothing listens).
    if settings.ca_file and settings.ca_file.is_file():
        config.connection.verify = str(settings.ca_file)
    if is_loopback_host(settings.connection_string.host):
        # The local emulator: a refused connection or an untrusted certificate (urllib3's "connect"
        # and "other" errors) will not heal on a retry, so fail at once instead of after msrest's
        # ~5 s of backoff. Remote hubs keep the SDK's retries: networks have transient failures.
        retry = config.retry_policy.policy  # a urllib3 Retry
        retry.connect = 0
        retry.other = 0
    return manager


manager_factory: ManagerFactory = SdkManagerFactory()


def to_wire(value: Any) -> Any:
    """SDK models -> the hub's JSON shape (camelCase keys, ISO dates), keeping fields the model lacks."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if hasattr(value, "serialize") and hasattr(value, "_attribute_map"):
        data = value.serialize(keep_readonly=True)
        # Query items are deserialized as Twin; devices.jobs fields and projections survive only here.
        extra = getattr(value, "additional_properties", None) or {}
        data.update({k: to_wire(v) for k, v in extra.items() if k not in data})
        return data
    return value


_SELECT_LIST = re.compile(r"^\s*select\s+(?:top\s+\d+\s+)?(?P<list>.*?)\s+from\s", re.IGNORECASE | re.DOTALL)
_ALIAS = re.compile(r"\s+as\s+(?P<alias>[A-Za-z_$][\w$]*)\s*$", re.IGNORECASE)


def select_list_names(sql: str) -> list[str]:
    """The output names of a query's SELECT list, in order ('SELECT deviceId, properties.reported.x AS y'
    -> ['deviceId', 'y']); [] for SELECT * or anything not understood."""
    match = _SELECT_LIST.match(sql)
    if not match:
        return []
    parts, depth, quote, current = [], 0, "", ""
    for char in match.group("list"):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += char
    parts.append(current)
    names = []
    for part in parts:
        alias = _ALIAS.search(part)
        names.append(alias.group("alias") if alias else part.strip().split(".")[-1])
    return [] if names == ["*"] else names


def in_select_order(item: Any, names: list[str]) -> Any:
    """The item's fields in SELECT order. The SDK deserializes every query item into a Twin model,
    which keeps the fields the model lacks in an unordered set: without this, columns would come out
    in a different order on every run."""
    if not isinstance(item, dict) or not names:
        return item
    rank = {name.lower(): position for position, name in enumerate(names)}
    return dict(sorted(item.items(), key=lambda pair: rank.get(pair[0].lower(), len(rank))))


class HubClient:
    """Typed operations on one hub. Every SDK call goes through _call for error translation."""

    def __init__(self, settings: ServiceSettings, factory: ManagerFactory | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self._factory = factory or manager_factory
        self._sleep = sleep
        self._registry: Any = None
        self._jobs: Any = None

    # -- managers, built on first use --------------------------------------------------------------
    @property
    def registry(self) -> Any:
        if self._registry is None:
            self._registry = self._build(self._factory.registry_manager)
        return self._registry

    @property
    def jobs(self) -> Any:
        if self._jobs is None:
            self._jobs = self._build(self._factory.job_manager)
        return self._jobs

    def _build(self, make: Callable[[ServiceSettings], Any]) -> Any:
        try:
            return make(self.settings)
        except (ValueError, KeyError) as e:  # the SDK's own connection string parsing
            raise SettingsProblem(f"IOTHUB_CONNECTION_STRING cannot be used: {e}") from None

    # -- devices -------------------------------------------------------------------------------------
    def create_device(self, device_id: str, primary_key: str, secondary_key: str, status: str) -> dict:
        return self._call(lambda: self.registry.create_device_with_sas(
            device_id, primary_key, secondary_key, status), device_id=device_id)

    def get_device(self, device_id: str) -> dict:
        return self._call(lambda: self.registry.get_device(device_id), device_id=device_id)

    def list_devices(self, top: int | None = None) -> list[dict]:
        return self._call(lambda: self.registry.get_devices(top)) or []

    def delete_device(self, device_id: str, etag: str | None = None) -> None:
        self._call(lambda: self.registry.delete_device(device_id, etag), device_id=device_id)

    # -- twins and methods ---------------------------------------------------------------------------
    def get_twin(self, device_id: str) -> dict:
        return self._call(lambda: self.registry.get_twin(device_id), device_id=device_id)

    def update_twin(self, device_id: str, desired: dict | None, tags: dict | None,
                    etag: str | None = None) -> dict:
        from azure.iot.hub.models import Twin, TwinProperties
        patch = Twin(tags=tags, properties=TwinProperties(desired=desired) if desired is not None else None)
        return self._call(lambda: self.registry.update_twin(device_id, patch, etag), device_id=device_id)

    def invoke_method(self, device_id: str, method_name: str, payload: Any,
                      response_timeout: int, connect_timeout: int) -> dict:
        from azure.iot.hub.models import CloudToDeviceMethod
        request = CloudToDeviceMethod(method_name=method_name, payload=payload,
                                      response_timeout_in_seconds=response_timeout,
                                      connect_timeout_in_seconds=connect_timeout)
        # msrest reads for at most 100 s by default; the hub may legitimately hold the request for the
        # connect timeout plus the response timeout (up to 600 s), so wait a little longer than that.
        connection = self.registry.protocol.config.connection
        connection.timeout = max(connection.timeout or 0, response_timeout + connect_timeout + 15)
        return self._call(lambda: self.registry.invoke_device_method(device_id, request),
                          device_id=device_id, method_name=method_name)

    # -- queries ---------------------------------------------------------------------------------------
    def query(self, sql: str, top: int | None = None, page_size: int = 100) -> list[dict]:
        """Every item of the query, following continuation tokens, at most `top` of them."""
        from azure.iot.hub.models import QuerySpecification
        spec = QuerySpecification(query=sql)
        items: list[dict] = []
        token: str | None = None
        seen: set[str] = set()
        while top is None or len(items) < top:
            size = page_size if top is None else min(page_size, top - len(items))
            page = self._call(lambda: self.registry.query_iot_hub(spec, token, size), raw=True)
            items.extend(to_wire(page.items or []))
            token = page.continuation_token
            if not token:
                break
            if token in seen:  # a hub that hands back the same token would loop forever
                raise ServiceError("the hub returned the same query continuation token twice")
            seen.add(token)
        names = select_list_names(sql)
        items = [in_select_order(item, names) for item in items]
        return items if top is None else items[:top]

    # -- jobs --------------------------------------------------------------------------------------------
    def create_job(self, request: dict) -> dict:
        """request: the JobRequest in wire shape (see service.jobspec)."""
        from azure.iot.hub.models import CloudToDeviceMethod, JobRequest, Twin, TwinProperties
        method = request.get("cloudToDeviceMethod")
        update = request.get("updateTwin")
        model = JobRequest(
            job_id=request["jobId"], type=request["type"],
            cloud_to_device_method=None if method is None else CloudToDeviceMethod(
                method_name=method["methodName"], payload=method.get("payload"),
                response_timeout_in_seconds=method.get("responseTimeoutInSeconds"),
                connect_timeout_in_seconds=method.get("connectTimeoutInSeconds")),
            update_twin=None if update is None else Twin(
                tags=update.get("tags"),
                properties=(TwinProperties(desired=update["properties"]["desired"])
                            if "properties" in update else None),
                etag=update.get("etag", "*")),
            query_condition=request["queryCondition"],
            start_time=request["startTime"],
            max_execution_time_in_seconds=request["maxExecutionTimeInSeconds"],
        )
        return self._call(lambda: self.jobs.create_scheduled_job(request["jobId"], model),
                          job_id=request["jobId"])

    def get_job(self, job_id: str) -> dict:
        return self._call(lambda: self.jobs.get_scheduled_job(job_id), job_id=job_id)

    def cancel_job(self, job_id: str) -> dict:
        return self._call(lambda: self.jobs.cancel_scheduled_job(job_id), job_id=job_id)

    def list_jobs(self, job_type: str | None, status: str | None, page_size: int = 100) -> list[dict]:
        """Every job of that type and status, following continuation tokens.

        IoT Hub answers GET /jobs/v2/query with a bare JSON array and an x-ms-continuation header
        (as /devices/query); the SDK's query_scheduled_jobs expects an object and cannot read that,
        so the response is read raw here, in either shape."""
        items: list[dict] = []
        token: str | None = None
        seen: set[str] = set()
        while True:
            page, token = self._call(
                lambda: read_jobs_page(get_jobs_page(self.jobs, job_type, status, token, page_size)), raw=True)
            items.extend(page)
            if not token:
                return items
            if token in seen:
                raise ServiceError("the hub returned the same job query continuation token twice")
            seen.add(token)

    # -- cloud-to-device messages (AMQP, see cloud_messages.py) -----------------------------------------
    def send_message(self, device_id: str, body: bytes, properties: dict[str, str], *, message_id: str,
                     **system: Any) -> None:
        """Queue a message for the device (system: correlation_id, content_type, content_encoding,
        expiry_time_ms, ack); IoT Hub keeps it until the device takes it or it expires."""
        from . import cloud_messages
        cloud_messages.send(self.registry, self.settings, device_id, body, properties, message_id=message_id,
                            **system)

    def purge_messages(self, device_id: str) -> dict:
        """Drop the device's waiting cloud-to-device messages: {"totalMessagesPurged", "deviceId", ...}."""
        return self._call(lambda: self.registry.protocol.cloud_to_device_messages
                          .purge_cloud_to_device_message_queue(device_id), device_id=device_id)

    def wait_for_feedback(self, message_id: str, timeout: float) -> Any:
        """The feedback record for message_id (raises WaitTimeout). Feedback on other messages received
        meanwhile is taken off the hub's feedback queue too: the hub has one queue for all senders."""
        from .cloud_messages import receive_feedback
        records = receive_feedback(self.settings, lambda r: r.original_message_id == message_id, timeout)
        return next(r for r in records if r.original_message_id == message_id)

    # -- error translation and throttling --------------------------------------------------------------
    def _call(self, operation: Callable[[], Any], *, raw: bool = False, **context: str) -> Any:
        for attempt in range(THROTTLE_RETRIES + 1):
            try:
                result = operation()
                return result if raw else to_wire(result)
            except ServiceError:
                raise
            except Exception as e:  # noqa: BLE001 - every SDK failure becomes one typed error
                error = translate_error(e, self.settings, **context)
                if isinstance(error, Throttled) and attempt < THROTTLE_RETRIES:
                    self._sleep(_retry_after(e) or THROTTLE_BACKOFF_S[attempt])
                    continue
                if error is None:
                    raise
                raise error from None
        raise AssertionError("unreachable")


JOBS_QUERY_PATH = "/jobs/v2/query"


def get_jobs_page(job_manager: Any, job_type: str | None, status: str | None, token: str | None,
                   page_size: int) -> Any:
    """GET /jobs/v2/query through the SDK's own client (its auth, TLS and retry settings), unparsed."""
    from msrest.exceptions import HttpOperationError

    operations = job_manager.protocol.jobs
    client = operations._client  # the SDK's msrest ServiceClient; its parsed call cannot read IoT Hub's answer
    params = {"api-version": operations.api_version}
    if job_type:
        params["jobType"] = job_type
    if status:
        params["jobStatus"] = status
    headers = {"Accept": "application/json", "x-ms-max-item-count": str(page_size)}
    if token:
        headers["x-ms-continuation"] = token
    response = client.send(client.get(JOBS_QUERY_PATH, params, headers), stream=False)
    if response.status_code != 200:
        raise HttpOperationError(operations._deserialize, response)
    return response


def read_jobs_page(response: Any) -> tuple[list[dict], str | None]:
    """A jobs query answer -> (jobs, continuation token): IoT Hub's bare array with the token in the
    x-ms-continuation header, or the {"items", "continuationToken"} object the SDK's model describes."""
    from msrest.exceptions import DeserializationError

    try:
        body = response.json()
    except ValueError:
        raise DeserializationError("the job query answer is not JSON") from None
    if isinstance(body, list):
        return body, response.headers.get("x-ms-continuation") or None
    if isinstance(body, dict) and isinstance(body.get("items", []), list):
        return body.get("items") or [], body.get("continuationToken") or None
    raise DeserializationError("the job query answer is neither a list of jobs nor a query result")


def _retry_after(error: Exception) -> float | None:
    response = getattr(error, "response", None)
    value = (getattr(response, "headers", None) or {}).get("Retry-After")
    try:
        return min(float(value), MAX_RETRY_AFTER_S) if value else None
    except ValueError:
        return None


ERROR_CODE_HEADER = "iothub-errorcode"
_NAMED = re.compile(r"^ErrorCode:\s*(?P<name>[A-Za-z]+);(?P<text>.*)$", re.DOTALL)
_MESSAGE_LINE = re.compile(r"^Message:\s*(?P<text>.+)$", re.MULTILINE)


def parse_hub_error(text: str, header: str | None = None) -> tuple[set[str], str]:
    """An IoT Hub error answer -> ({error names and numeric codes}, message).

    IoT Hub's shapes, with the error name also in the `iothub-errorcode` header:
    registry, twins, jobs, auth, throttling:
        {"Message": "ErrorCode:DeviceNotFound;<text>", "ExceptionMessage": "Tracking ID:..."}
    direct methods (the inner object is a JSON *string*):
        {"Message": "{\"errorCode\":404103,\"message\":\"...\",...}", "ExceptionMessage": ""}
    and that inner object on its own ({"errorCode": 409301, "message": ...}). The jobs service may
    wrap its own answer in the text ("Error: BadRequest {"Message": ...}" or "...\nMessage: <text>").
    """
    codes: set[str] = {header.strip()} if header and header.strip() else set()
    try:
        body = json.loads(text) if text and text.strip() else None
    except ValueError:
        return codes, text.strip()[:300]
    message = _read_envelope(body, codes, depth=0)
    return codes, message[:300]


def _read_envelope(body: Any, codes: set[str], depth: int) -> str:
    if not isinstance(body, dict) or depth > 3:
        return ""
    if "errorCode" in body:  # the direct-method shape, bare
        if isinstance(body["errorCode"], int) and not isinstance(body["errorCode"], bool):
            codes.add(str(body["errorCode"]))
        return str(body.get("message") or "").strip()
    message = body.get("Message")
    if not isinstance(message, str):
        return ""
    stripped = message.strip()
    if stripped.startswith("{"):
        try:
            return _read_envelope(json.loads(stripped), codes, depth + 1)
        except ValueError:
            return stripped
    named = _NAMED.match(stripped)
    if not named:
        return stripped
    codes.add(named.group("name"))
    text = named.group("text").strip()
    wrapped = text.find('{"Message"')
    if wrapped >= 0:
        try:
            inner = _read_envelope(json.loads(text[wrapped:]), codes, depth + 1)
        except ValueError:
            inner = ""
        if inner:
            return inner
    line = _MESSAGE_LINE.search(text)
    return line.group("text").strip() if line else text


def translate_error(error: Exception, settings: ServiceSettings, *, device_id: str | None = None,
                    method_name: str | None = None, job_id: str | None = None) -> ServiceError | None:
    """Map an SDK/msrest/requests failure to our typed error (None: not ours to explain)."""
    from msrest.exceptions import (ClientException, ClientRequestError, DeserializationError,
                                   HttpOperationError)

    host = settings.connection_string.host_name
    if isinstance(error, HttpOperationError):
        return _from_status(error, host, device_id, method_name, job_id)
    if isinstance(error, ClientRequestError):
        return _from_connection_failure(getattr(error, "inner_exception", None) or error.__context__,
                                        str(error), settings)
    if isinstance(error, DeserializationError):
        return ServiceError(f"the hub at {host} sent an answer that cannot be read: {error}")
    if isinstance(error, ClientException):  # validation, authentication: msrest's own one-liners
        return ServiceError(f"the request to {host} failed: {error}")
    if isinstance(error, OSError) and "CA certificate bundle" in str(error):
        return TlsFailure(f"cannot use the CA file: {error}; {CA_HINT}")
    return None


def _from_status(error: Any, host: str, device_id: str | None, method_name: str | None,
                 job_id: str | None) -> ServiceError:
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None) or 0
    headers = getattr(response, "headers", None) or {}
    codes, message = parse_hub_error(getattr(response, "text", "") or "", headers.get(ERROR_CODE_HEADER))
    codes_lower = {c.lower() for c in codes}
    detail = f" ({message})" if message else ""
    subject = f"device '{device_id}'" if device_id else f"job '{job_id}'" if job_id else "the resource"

    if "404103" in codes or "devicenotonline" in codes_lower:
        return DeviceOffline(f"device '{device_id}' is not online: it must be connected to receive "
                             f"method '{method_name}' (or raise --connect-timeout)")
    if "504101" in codes or (status == 504 and method_name):
        return MethodTimeout(f"device '{device_id}' did not answer method '{method_name}' in time "
                             "(raise --response-timeout, or check the device handles the method)")
    if status == 404:
        if "404001" in codes or "devicenotfound" in codes_lower or (device_id and not job_id):
            return NotFound(f"device '{device_id}' not found on hub {host}")
        return NotFound(f"{subject} not found on hub {host}{detail}")
    if status == 412:
        return EtagMismatch(f"etag mismatch: the twin of {subject} changed since that etag was read; "
                            "read it again (twin show) or drop --etag")
    if status == 409:
        return AlreadyExists(f"{subject} already exists on hub {host}{detail}")
    if status == 429:
        return Throttled(f"the hub {host} is throttling requests (429) and still was after "
                         f"{THROTTLE_RETRIES} retries; try again later{detail}")
    if status in (401, 403):
        return Unauthorized(f"the hub {host} refused the credentials ({status}): check the policy name, "
                            f"its key and its rights in IOTHUB_CONNECTION_STRING{detail}")
    return ServiceError(f"the hub {host} answered {status}{detail}")


def _from_connection_failure(inner: Any, text: str, settings: ServiceSettings) -> ServiceError:
    import requests

    host = settings.connection_string.host_name
    if isinstance(inner, requests.exceptions.SSLError) or "CERTIFICATE_VERIFY_FAILED" in text:
        reason = "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in text else "handshake failed"
        return TlsFailure(f"TLS with {host} failed ({reason}); {CA_HINT}")
    if isinstance(inner, requests.exceptions.Timeout):
        return HubUnreachable(f"the hub {host} did not answer in time")
    hint = ""
    if settings.is_emulator and not settings.emulator_running:
        hint = ("; the local emulator is not running: start it with `iothub-emulator`, "
                "or set IOTHUB_CONNECTION_STRING for an Azure IoT hub")
    elif is_loopback_host(settings.connection_string.host):
        hint = "; is the local emulator running? Start it with `iothub-emulator`"
    reason = "connection refused" if "refused" in text.lower() else "no connection"
    return HubUnreachable(f"cannot reach the IoT hub at {host} ({reason}){hint}")
