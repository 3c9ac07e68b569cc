"""JobRequest JSON (PUT /jobs/v2/{id}) -> a validated JobSpec, or a 400 JobError saying why.

Limits follow IoT Hub: method payload <= 128 KB, responseTimeoutInSeconds 5..300 (default 30),
connectTimeoutInSeconds 0..300 (default 0), a startTime that may lack a time zone (then it is UTC).
Whole numbers may come as JSON strings ("30"), as IoT Hub's JSON reader accepts them (the az
extension sends its timeouts so). A queryCondition of "*" targets every device (Microsoft's jobs
guide and az's help use it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from hubsettings import limits

from .clock import iso_timestamp, parse_timestamp
from .errors import HubError
from .jobs_errors import JobArgumentInvalid, JobArgumentNull
from .query import Condition, QuerySyntaxError, parse_condition
from .query.nodes import BareValue, Literal
from .twins import clean_patch

METHOD_JOB = "scheduleDeviceMethod"
TWIN_JOB = "scheduleUpdateTwin"
JOB_TYPES = (METHOD_JOB, TWIN_JOB)

#: What the emulator assumes when a request gives no maxExecutionTimeInSeconds.
DEFAULT_MAX_EXECUTION_SECONDS = 3600

#: queryCondition "*": every device.
EVERY_DEVICE = "*"
_WHOLE_NUMBER_TEXT = re.compile(r"^\s*[+-]?\d{1,18}\s*$")

# IoT Hub job ids follow the device id rules: <= 128 ASCII letters, digits and -:.+%_#*?!(),=@;$'
_JOB_ID = re.compile(r"^[A-Za-z0-9\-:.+%_#*?!(),=@;$']{1,128}$")


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    type: str
    query_condition: str
    condition: Condition
    start_time: float  # epoch seconds, UTC
    max_execution_seconds: int
    cloud_to_device_method: dict | None  # with timeouts filled in
    update_twin: dict | None


def parse_job_request(body: Any, now: float, job_id: str | None = None) -> JobSpec:
    """Validate a JobRequest. `job_id` is the id from the URL, which the body must not contradict."""
    if not isinstance(body, dict):
        raise JobArgumentInvalid("the job request must be a JSON object")
    body_id = body.get("jobId")
    if job_id is not None and body_id not in (None, job_id):
        raise JobArgumentInvalid(f"jobId {body_id!r} in the body does not match {job_id!r} in the URL")
    job_id = job_id if job_id is not None else body_id
    if job_id is None:
        raise JobArgumentNull("jobId is required")
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise JobArgumentInvalid(
            f"jobId {job_id!r} is invalid: use 1 to 128 letters, digits or -:.+%_#*?!(),=@;$'"
        )

    job_type = body.get("type")
    if job_type is None:
        raise JobArgumentNull("type is required")
    if job_type not in JOB_TYPES:
        raise JobArgumentInvalid(f"type {job_type!r} is not supported; use {' or '.join(JOB_TYPES)}")

    text = body.get("queryCondition")
    if text is None or (isinstance(text, str) and not text.strip()):
        raise JobArgumentNull("queryCondition is required")
    if not isinstance(text, str):
        raise JobArgumentInvalid("queryCondition must be a string")
    condition = _condition(text)

    method = _method(body.get("cloudToDeviceMethod")) if job_type == METHOD_JOB else None
    twin = _twin_patch(body.get("updateTwin")) if job_type == TWIN_JOB else None
    return JobSpec(
        job_id=job_id,
        type=job_type,
        query_condition=text,
        condition=condition,
        start_time=_start_time(body.get("startTime"), now),
        max_execution_seconds=_max_execution(body.get("maxExecutionTimeInSeconds")),
        cloud_to_device_method=method,
        update_twin=twin,
    )


def json_whole_number(value: Any) -> int | None:
    """An integer as IoT Hub reads one from JSON: a number without a fraction, or a string of digits
    ("30"); None for anything else (booleans, fractions, other text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _WHOLE_NUMBER_TEXT.match(value):
        return int(value)
    return None


def _condition(text: str) -> Condition:
    if text.strip() == EVERY_DEVICE:
        return BareValue(Literal(True))
    try:
        return parse_condition(text)
    except QuerySyntaxError as error:
        raise JobArgumentInvalid(f"queryCondition is invalid: {error}") from None


#: Kept under these names for the job modules; the one implementation is in clock.py.
parse_utc = parse_timestamp
format_utc = iso_timestamp


def _start_time(value: Any, now: float) -> float:
    if value is None:
        return now
    if not isinstance(value, str):
        raise JobArgumentInvalid("startTime must be an ISO 8601 string")
    try:
        return parse_utc(value)
    except (ValueError, OverflowError):
        raise JobArgumentInvalid(f"startTime {value!r} is not an ISO 8601 date and time") from None


def _max_execution(value: Any) -> int:
    if value is None:
        return DEFAULT_MAX_EXECUTION_SECONDS
    seconds = json_whole_number(value)
    if seconds is None or seconds <= 0:
        raise JobArgumentInvalid("maxExecutionTimeInSeconds must be a positive whole number")
    return seconds


def _timeout(method: dict, name: str, default: int, low: int, high: int) -> int:
    value = method.get(name)
    if value is None:
        return default
    seconds = json_whole_number(value)
    if seconds is None or not low <= seconds <= high:
        raise JobArgumentInvalid(f"cloudToDeviceMethod.{name} must be a whole number from {low} to {high}")
    return seconds


def _method(method: Any) -> dict:
    if method is None:
        raise JobArgumentNull("cloudToDeviceMethod is required for a scheduleDeviceMethod job")
    if not isinstance(method, dict):
        raise JobArgumentInvalid("cloudToDeviceMethod must be a JSON object")
    name = method.get("methodName")
    if not isinstance(name, str) or not name.strip():
        raise JobArgumentNull("cloudToDeviceMethod.methodName is required")
    payload = method.get("payload")
    limit = limits.METHOD_PAYLOAD_MAX_BYTES
    if len(json.dumps(payload).encode("utf-8")) > limit:
        raise JobArgumentInvalid(f"cloudToDeviceMethod.payload is larger than {limit} bytes")
    return {
        "methodName": name,
        "payload": payload,
        "responseTimeoutInSeconds": _timeout(method, "responseTimeoutInSeconds",
                                             limits.METHOD_RESPONSE_TIMEOUT_DEFAULT,
                                             *limits.METHOD_RESPONSE_TIMEOUT_RANGE),
        "connectTimeoutInSeconds": _timeout(method, "connectTimeoutInSeconds",
                                            limits.METHOD_CONNECT_TIMEOUT_DEFAULT,
                                            *limits.METHOD_CONNECT_TIMEOUT_RANGE),
    }


def _twin_patch(twin: Any) -> dict:
    if twin is None:
        raise JobArgumentNull("updateTwin is required for a scheduleUpdateTwin job")
    if not isinstance(twin, dict):
        raise JobArgumentInvalid("updateTwin must be a JSON object")
    properties = twin.get("properties") or {}
    if not isinstance(properties, dict):
        raise JobArgumentInvalid("updateTwin.properties must be a JSON object")
    if properties.get("reported") is not None:
        raise JobArgumentInvalid("updateTwin cannot change reported properties; only the device can")
    desired, tags = properties.get("desired"), twin.get("tags")
    if desired is not None and not isinstance(desired, dict):
        raise JobArgumentInvalid("updateTwin.properties.desired must be a JSON object")
    if tags is not None and not isinstance(tags, dict):
        raise JobArgumentInvalid("updateTwin.tags must be a JSON object")
    if not desired and not tags:
        raise JobArgumentInvalid("updateTwin must change tags or properties.desired")
    # The names every device's twin update would refuse (a.b, $x, spaces, too deep): 400 now, not
    # a job that fails on every device later.
    for what, patch in (("updateTwin.tags", tags), ("updateTwin.properties.desired", desired)):
        if patch:
            try:
                clean_patch(patch, what)
            except HubError as error:
                raise JobArgumentInvalid(error.message) from None
    return twin
