"""JobRequest bodies exactly as IoT Hub expects them (scheduleDeviceMethod / scheduleUpdateTwin)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .errors import BadInput
from .inputs import devices_condition


def query_condition(device_ids: tuple[str, ...], condition: str | None) -> str:
    """The job's WHERE clause: from --device IDs, or --query-condition as given (without WHERE)."""
    if device_ids and condition:
        raise BadInput("give --device or --query-condition, not both")
    if device_ids:
        return devices_condition(device_ids)
    if not condition or not condition.strip():
        raise BadInput("give the devices to target: --device ID (repeatable) or --query-condition")
    condition = condition.strip()
    if condition.lower().startswith("where "):
        condition = condition[len("where "):].strip()  # the hub wants the clause only
    return condition


def method_job(job_id: str, method_name: str, payload: Any, response_timeout: int, connect_timeout: int,
               condition: str, start_time: dt.datetime, max_execution_time: int) -> dict:
    return {
        "jobId": job_id,
        "type": "scheduleDeviceMethod",
        "cloudToDeviceMethod": {"methodName": method_name, "payload": payload,
                                "responseTimeoutInSeconds": response_timeout,
                                "connectTimeoutInSeconds": connect_timeout},
        "queryCondition": condition,
        "startTime": start_time,
        "maxExecutionTimeInSeconds": max_execution_time,
    }


def twin_update_job(job_id: str, desired: dict | None, tags: dict | None, condition: str,
                    start_time: dt.datetime, max_execution_time: int) -> dict:
    if desired is None and tags is None:
        raise BadInput("give --desired and/or --tags")
    update: dict[str, Any] = {"etag": "*"}
    if desired is not None:
        update["properties"] = {"desired": desired}
    if tags is not None:
        update["tags"] = tags
    return {
        "jobId": job_id,
        "type": "scheduleUpdateTwin",
        "updateTwin": update,
        "queryCondition": condition,
        "startTime": start_time,
        "maxExecutionTimeInSeconds": max_execution_time,
    }
