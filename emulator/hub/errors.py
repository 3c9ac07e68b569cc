"""Domain errors of the hub model. Each carries the IoT Hub error code and HTTP status, so every front
(MQTT, REST, in-process API) reports the same failure the same way, as IoT Hub does."""

from __future__ import annotations


class HubError(Exception):
    """A request the hub refuses. `error_code` is IoT Hub's 6-digit code, `http_status` its first 3."""

    error_code: int = 500001
    error_name: str = "ServerError"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    @property
    def http_status(self) -> int:
        return self.error_code // 1000

    @property
    def wire_message(self) -> str:
        """The text IoT Hub puts in its answer; `message` may say more, for the emulator's log."""
        return self.message


class ArgumentInvalid(HubError):
    error_code, error_name = 400004, "ArgumentInvalid"


class IotHubUnauthorizedAccess(HubError):
    """IoT Hub never says why a credential was refused; the emulator logs the reason instead."""

    error_code, error_name = 401002, "IotHubUnauthorizedAccess"

    @property
    def wire_message(self) -> str:
        return "Unauthorized"


class DeviceNotFound(HubError):
    error_code, error_name = 404001, "DeviceNotFound"


class DeviceNotOnline(HubError):
    error_code, error_name = 404103, "DeviceNotOnline"


class DeviceAlreadyExists(HubError):
    error_code, error_name = 409001, "DeviceAlreadyExists"


class PreconditionFailed(HubError):
    error_code, error_name = 412002, "PreconditionFailed"


class MessageTooLarge(HubError):
    error_code, error_name = 413002, "MessageTooLarge"


class ThrottlingException(HubError):
    error_code, error_name = 429001, "ThrottlingException"


class GatewayTimeout(HubError):
    error_code, error_name = 504101, "GatewayTimeout"
