"""Why the listener stopped, as typed errors that carry their documented exit code."""

from __future__ import annotations

EXIT_OK = 0  # stopped by Ctrl-C or SIGTERM after a clean disconnect
EXIT_UNEXPECTED = 1  # a bug: please report it
EXIT_USAGE = 2  # bad command-line usage (click)
EXIT_SETTINGS = 3  # settings cannot be used (connection string, CA file, DPS settings, --count)
EXIT_AUTH = 4  # the hub or DPS refused the credentials (wrong key, unknown or disabled device)
EXIT_UNREACHABLE = 5  # the hub or DPS could not be reached within --connect-timeout
EXIT_PROVISIONING = 6  # DPS refused the registration (e.g. 409) or did not assign the device to a hub
EXIT_INTERRUPTED = 130  # a fleet (--count, --connection-strings-file) stopped by Ctrl-C

EXIT_CODES_HELP = (
    "Exit codes: 0 stopped by SIGTERM (or Ctrl-C, one device); 1 unexpected error; 2 usage error; "
    "3 bad settings; 4 credentials refused by the hub or DPS; "
    "5 hub or DPS unreachable within --connect-timeout; 6 DPS did not assign the device (or refused it); "
    "130 a fleet stopped by Ctrl-C (a fleet's 3-6: none of its devices started, for that reason)."
)


class DeviceError(Exception):
    """An error the CLI prints as one line and turns into its exit code."""
    exit_code = EXIT_UNEXPECTED


class SettingsProblem(DeviceError):
    exit_code = EXIT_SETTINGS


class AuthenticationRefused(DeviceError):
    exit_code = EXIT_AUTH


class HubUnreachable(DeviceError):
    exit_code = EXIT_UNREACHABLE


class ProvisioningFailed(DeviceError):
    exit_code = EXIT_PROVISIONING
