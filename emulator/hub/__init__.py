"""The IoT Hub model: registry, twins, direct methods, telemetry and DPS enrollments. No I/O."""

from .clock import Clock, FakeClock, system_clock
from .errors import (ArgumentInvalid, DeviceAlreadyExists, DeviceNotFound, DeviceNotOnline, GatewayTimeout,
                     HubError, IotHubUnauthorizedAccess, MessageTooLarge, PreconditionFailed,
                     ThrottlingException)
from .hub import DeviceConnections, DeviceDisabled, Hub, NewDevice
from .methods import MethodCall, MethodResult
from .provisioning import GroupEnrollment, IndividualEnrollment, RegistrationState
from .registry import Device
from .telemetry import TelemetryMessage

__all__ = [
    "Clock", "FakeClock", "system_clock", "ArgumentInvalid", "DeviceAlreadyExists", "DeviceNotFound",
    "DeviceNotOnline", "GatewayTimeout", "HubError", "IotHubUnauthorizedAccess", "MessageTooLarge",
    "PreconditionFailed", "ThrottlingException", "DeviceDisabled", "DeviceConnections", "Hub",
    "NewDevice", "MethodCall",
    "MethodResult", "GroupEnrollment", "IndividualEnrollment", "RegistrationState", "Device",
    "TelemetryMessage",
]
