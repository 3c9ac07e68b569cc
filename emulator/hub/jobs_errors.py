"""Errors the job scheduler raises, shaped like the hub model's errors (emulator/hub/errors.py):
an IoT Hub error name and 6-digit code whose first three digits are the HTTP status, so the REST
front maps both families the same way. Kept separate so the scheduler does not depend on the model.
"""

from __future__ import annotations


class JobError(Exception):
    error_code: int = 500001
    error_name: str = "ServerError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def http_status(self) -> int:
        return self.error_code // 1000

    def to_json(self) -> dict[str, str]:
        text = f"ErrorCode:{self.error_name};{self.message}"
        return {"Message": text, "ExceptionMessage": text}


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
