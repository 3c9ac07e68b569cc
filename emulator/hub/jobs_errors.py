"""Errors the job scheduler raises: HubErrors (emulator/hub/errors.py), with an IoT Hub error name
and 6-digit code whose first three digits are the HTTP status, so every front maps them the same way.
JobError lets callers single out the scheduler's refusals.
"""

from __future__ import annotations

from .errors import HubError


class JobError(HubError):
    """A request the job scheduler refuses."""


class JobArgumentInvalid(JobError):
    """A JobRequest IoT Hub would refuse (bad type, condition, times, method or twin patch)."""

    error_code, error_name = 400004, "ArgumentInvalid"


class JobArgumentNull(JobError):
    """A required JobRequest field is missing."""

    error_code, error_name = 400005, "ArgumentNull"


class JobNotFound(JobError):
    error_code, error_name = 404002, "JobNotFound"


class JobAlreadyExists(JobError):
    """A job id already used (IoT Hub answers 409 Conflict; job ids are never reused)."""

    error_code, error_name = 409001, "JobAlreadyExists"
