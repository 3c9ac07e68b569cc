"""Typed errors of the service CLI, each with its documented exit code.

Every user-facing failure is one of these: click prints it as a single "Error: ..." line on stderr
and exits with the error's code, so scripts can tell an offline device from a wrong key.
"""

from __future__ import annotations

from enum import IntEnum

import click
from hubsettings import mask_secrets


class ExitCode(IntEnum):
    OK = 0
    HUB_ERROR = 1  # any other error answer from the hub
    USAGE = 2  # bad option or argument, malformed JSON, bad time (click's own usage code)
    SETTINGS = 3  # invalid connection string or CA file
    NOT_FOUND = 4  # device or job not found (404001 DeviceNotFound)
    DEVICE_OFFLINE = 5  # 404103 DeviceNotOnline
    METHOD_TIMEOUT = 6  # 504101 the device did not answer the method in time
    METHOD_FAILED = 7  # the device answered a method with a non-2xx status
    ETAG_MISMATCH = 8  # 412 PreconditionFailed
    ALREADY_EXISTS = 9  # 409 e.g. DeviceAlreadyExists
    THROTTLED = 10  # 429, still throttled after bounded retries
    UNAUTHORIZED = 11  # 401/403 wrong key or policy rights
    UNREACHABLE = 12  # no connection to the hub
    TLS = 13  # TLS handshake or certificate failure
    WAIT_TIMEOUT = 14  # reboot / twin wait / job wait gave up
    JOB_FAILED = 15  # the job ended failed or cancelled
    INTERRUPTED = 130  # Ctrl-C (SIGINT), the shell's convention


EXIT_CODE_HELP: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.HUB_ERROR: "other error answer from the hub",
    ExitCode.USAGE: "bad option or argument, malformed JSON, bad time",
    ExitCode.SETTINGS: "invalid connection string or CA file",
    ExitCode.NOT_FOUND: "device or job not found",
    ExitCode.DEVICE_OFFLINE: "device not online (404103)",
    ExitCode.METHOD_TIMEOUT: "device did not answer the method in time (504101)",
    ExitCode.METHOD_FAILED: "device answered the method with a non-2xx status",
    ExitCode.ETAG_MISMATCH: "etag mismatch (412)",
    ExitCode.ALREADY_EXISTS: "already exists (409)",
    ExitCode.THROTTLED: "throttled (429) after retries",
    ExitCode.UNAUTHORIZED: "unauthorized (401/403)",
    ExitCode.UNREACHABLE: "hub unreachable",
    ExitCode.TLS: "TLS failure (untrusted certificate)",
    ExitCode.WAIT_TIMEOUT: "a wait timed out",
    ExitCode.JOB_FAILED: "job ended failed or cancelled",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C); a scheduled job keeps running on the hub",
}


def exit_codes_epilog() -> str:
    """The exit-code table for the root --help (\b keeps click from rewrapping it)."""
    lines = ["\b", "Exit codes:"]
    lines += [f"  {int(code):>3}  {text}" for code, text in EXIT_CODE_HELP.items()]
    return "\n".join(lines)


class ServiceError(click.ClickException):
    """A failure reported as one masked line with a documented exit code."""

    exit_code: int = ExitCode.HUB_ERROR

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(mask_secrets(" ".join(str(message).split())))
        if exit_code is not None:
            self.exit_code = exit_code


class BadInput(ServiceError):
    exit_code = ExitCode.USAGE


class SettingsProblem(ServiceError):
    exit_code = ExitCode.SETTINGS


class NotFound(ServiceError):
    exit_code = ExitCode.NOT_FOUND


class DeviceOffline(ServiceError):
    exit_code = ExitCode.DEVICE_OFFLINE


class MethodTimeout(ServiceError):
    exit_code = ExitCode.METHOD_TIMEOUT


class MethodFailed(ServiceError):
    exit_code = ExitCode.METHOD_FAILED


class EtagMismatch(ServiceError):
    exit_code = ExitCode.ETAG_MISMATCH


class AlreadyExists(ServiceError):
    exit_code = ExitCode.ALREADY_EXISTS


class Throttled(ServiceError):
    exit_code = ExitCode.THROTTLED


class Unauthorized(ServiceError):
    exit_code = ExitCode.UNAUTHORIZED


class HubUnreachable(ServiceError):
    exit_code = ExitCode.UNREACHABLE


class TlsFailure(ServiceError):
    exit_code = ExitCode.TLS


class WaitTimeout(ServiceError):
    exit_code = ExitCode.WAIT_TIMEOUT


class JobFailed(ServiceError):
    exit_code = ExitCode.JOB_FAILED


class Interrupted(ServiceError):
    exit_code = ExitCode.INTERRUPTED
