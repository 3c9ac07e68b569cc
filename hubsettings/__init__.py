"""Hub settings shared by the device listener and the service CLI.

Precedence: command-line flag > environment > .env > the local emulator (discovery file, then
well-known defaults). Connection strings are validated with errors that name the bad part, and
secrets are masked in anything printed.
"""

from .connection_string import (ConnectionString, ConnectionStringError, is_loopback_host,
                                parse_connection_string, split_host_port)
from . import wellknown
from .discovery import EmulatorInfo, discovery_path, emulator_home, read_discovery, write_discovery
from .errors import SettingsError
from .masking import mask_key, mask_secrets
from .resolve import (DeviceSettings, ProvisioningSettings, ServiceSettings, emulator_environment, read_ca_file,
                      resolve_device_settings, resolve_service_settings, with_registered_key)
from .sas import SasError, build_token, derive_device_key, parse_token

__all__ = [
    "ConnectionString", "ConnectionStringError", "is_loopback_host", "parse_connection_string", "split_host_port",
    "EmulatorInfo", "discovery_path", "emulator_home", "read_discovery", "write_discovery",
    "SettingsError", "mask_key", "mask_secrets", "DeviceSettings", "ProvisioningSettings",
    "ServiceSettings", "emulator_environment", "read_ca_file", "resolve_device_settings", "resolve_service_settings",
    "with_registered_key",
    "SasError", "build_token", "derive_device_key", "parse_token",
]
