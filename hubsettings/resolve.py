"""Where each side gets its hub settings: flag > environment > .env > the local emulator.

The local emulator comes last: first its discovery file (written by a running emulator), then its
well-known development defaults. A real Azure connection string given at any layer wins, and then
nothing about the emulator is read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from dotenv import dotenv_values, find_dotenv

from . import wellknown
from .connection_string import ConnectionString, ConnectionStringError, parse_connection_string
from .discovery import (DISCOVERY_ENV, EmulatorInfo, discovery_path, emulator_home, expand_path,
                        other_discovery_files, read_discovery)
from .errors import SettingsError
from .masking import mask_key
from .registry_key import registered_device_key
from .sas import SasError, derive_device_key

DEVICE_CONNECTION_STRING = "IOTHUB_DEVICE_CONNECTION_STRING"
SERVICE_CONNECTION_STRING = "IOTHUB_CONNECTION_STRING"
DEVICE_ID = "IOTHUB_DEVICE_ID"
PROVISIONING_HOST = "PROVISIONING_HOST"
PROVISIONING_IDSCOPE = "PROVISIONING_IDSCOPE"
PROVISIONING_REGISTRATION_ID = "PROVISIONING_REGISTRATION_ID"
PROVISIONING_SYMMETRIC_KEY = "PROVISIONING_SYMMETRIC_KEY"
PROVISIONING_GROUP_KEY = "PROVISIONING_GROUP_KEY"
CA_FILE = "IOTHUB_CA_FILE"

GLOBAL_PROVISIONING_HOST = "global.azure-devices-provisioning.net"
_AZURE_SUFFIXES = (".azure-devices.net", ".azure-devices-provisioning.net", ".azure-devices.cn",
                   ".azure-devices.us", ".azure-devices.de")


@dataclass(frozen=True)
class _Value:
    value: str
    source: str  # "command line", "environment", ".env (/path/.env)"


class _Layers:
    """Looks each setting up in flag, environment and .env order; remembers where it came from."""

    def __init__(self, flags: Mapping[str, str | None] | None, env: Mapping[str, str] | None,
                 dotenv_path: str | Path | None):
        self.env = dict(os.environ if env is None else env)
        if dotenv_path is None:
            found = find_dotenv(usecwd=True)
            dotenv_path = found or None
        self.dotenv_path = Path(dotenv_path) if dotenv_path else None
        dotenv = dotenv_values(self.dotenv_path) if self.dotenv_path and self.dotenv_path.is_file() else {}
        # python-dotenv expands ${VAR}; a shell also expands $VAR, which .env.example's lines may use.
        dotenv = {k: os.path.expandvars(v) for k, v in dotenv.items() if v}
        self.layers = [
            ("command line", {k: v for k, v in (flags or {}).items() if v not in (None, "")}),
            ("environment", {k: v for k, v in self.env.items() if v}),
            (f".env ({self.dotenv_path})", {k: v for k, v in dotenv.items() if v}),
        ]

    def get(self, name: str) -> _Value | None:
        for source, values in self.layers:
            if name in values:
                return _Value(str(values[name]).strip(), source)
        return None

    def env_for_discovery(self) -> dict[str, str]:
        """Discovery/home overrides may come from any layer (tests and .env set them)."""
        out = dict(self.env)
        for name in ("IOTHUB_EMULATOR_DISCOVERY", "IOTHUB_EMULATOR_HOME"):
            value = self.get(name)
            if value:
                out[name] = value.value
        return out


@dataclass(frozen=True)
class ProvisioningSettings:
    host: str
    id_scope: str
    registration_id: str
    symmetric_key: str  # the device's own key (derived when a group key was given)
    from_group_key: bool = False

    def describe(self) -> str:
        how = "group enrollment, derived device key" if self.from_group_key else "symmetric key"
        return (f"DPS {self.host} scope {self.id_scope} registration {self.registration_id} "
                f"({how} {mask_key(self.symmetric_key)})")


@dataclass(frozen=True)
class DeviceSettings:
    connection_string: ConnectionString | None
    provisioning: ProvisioningSettings | None
    ca_file: Path | None
    source: str
    is_emulator: bool = False
    emulator_running: bool = True
    emulator: EmulatorInfo | None = None  # the running local emulator these settings came from

    @property
    def device_id(self) -> str:
        if self.connection_string:
            return self.connection_string.device_id or ""
        return self.provisioning.registration_id if self.provisioning else ""

    def describe(self) -> str:
        """One line saying which hub and identity are used, never a key."""
        if self.connection_string:
            target = f"IoT hub {self.connection_string.host_name} as device {self.device_id}"
        else:
            target = f"{self.provisioning.describe()}" if self.provisioning else "nothing"
        where = "local emulator, " if self.is_emulator else ""
        return f"Using {target} ({where}from {self.source})"

    def ca_pem(self) -> str | None:
        return read_ca_file(self.ca_file)


@dataclass(frozen=True)
class ServiceSettings:
    connection_string: ConnectionString
    ca_file: Path | None
    source: str
    is_emulator: bool = False
    emulator_running: bool = True

    def describe(self) -> str:
        where = "local emulator, " if self.is_emulator else ""
        return (f"Using IoT hub {self.connection_string.host_name} with policy "
                f"{self.connection_string.shared_access_key_name} ({where}from {self.source})")


def read_ca_file(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise SettingsError(f"CA file {path} cannot be read: {e.strerror or e}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise SettingsError(f"CA file {path} holds no PEM certificate")
    return text


def is_azure_host(host: str) -> bool:
    return host.lower().endswith(_AZURE_SUFFIXES)


def _explicit_ca(layers: _Layers) -> Path | None:
    value = layers.get(CA_FILE)
    if not value:
        return None
    path = expand_path(value.value)
    if not path.is_file():
        raise SettingsError(f"{CA_FILE} ({value.source}): {path} does not exist")
    try:
        read_ca_file(path)
    except SettingsError as e:
        raise SettingsError(f"{CA_FILE} ({value.source}): {e}") from None
    return path


def _ca_for_host(layers: _Layers, host: str, emulator: EmulatorInfo | None) -> Path | None:
    """Explicit CA, else the emulator's CA when the host is the running emulator's, else system trust."""
    explicit = _explicit_ca(layers)
    if explicit or is_azure_host(host):
        return explicit
    if emulator and emulator.host_name.lower() == host.lower() and emulator.ca_file:
        return Path(emulator.ca_file)
    return None


def _parse(value: _Value, name: str, expect: str) -> ConnectionString:
    try:
        return parse_connection_string(value.value, expect=expect, what=f"{name} ({value.source})")
    except ConnectionStringError as e:
        raise SettingsError(str(e)) from None


def _emulator(layers: _Layers) -> tuple[EmulatorInfo | None, str]:
    """The local emulator to use and a phrase saying how it was chosen.

    An explicit IOTHUB_EMULATOR_DISCOVERY names it. Otherwise the default address's emulator, naming any
    others that run; with none there, the only other one; with several others, the user must choose:
    a newcomer is never switched silently from one hub to another.
    """
    env = layers.env_for_discovery()
    path = discovery_path(env)
    info = read_discovery(path)
    if env.get(DISCOVERY_ENV):
        return info, f"discovery file {path}"
    others = [(p, i) for p in other_discovery_files(env) if (i := read_discovery(p)) is not None]
    if info is not None:
        if not others:
            return info, f"discovery file {path}"
        names = ", ".join(f"{i.mqtt_address} ({DISCOVERY_ENV}={p})" for p, i in others)
        return info, f"discovery file {path}; also running: {names}"
    if len(others) == 1:
        (only_path, only), = others
        return only, f"discovery file {only_path}, the only emulator running"
    if others:
        listing = "; ".join(f"{i.mqtt_address}: {DISCOVERY_ENV}={p}" for p, i in others)
        raise SettingsError(f"{len(others)} local emulators are running and none on the default address: "
                            f"choose one by setting {listing}")
    return None, f"discovery file {path}"


def _emulator_serving(layers: _Layers, host: str) -> EmulatorInfo | None:
    """The running local emulator whose host name a given connection string names, if any."""
    env = layers.env_for_discovery()
    paths = [discovery_path(env)] + ([] if env.get(DISCOVERY_ENV) else other_discovery_files(env))
    for path in paths:
        info = read_discovery(path)
        if info is not None and info.host_name.lower() == host.lower():
            return info
    return None


def emulator_environment(env: Mapping[str, str] | None = None,
                         dotenv_path: str | Path | None = None) -> dict[str, str]:
    """The environment with IOTHUB_EMULATOR_HOME and IOTHUB_EMULATOR_DISCOVERY taken from .env when the
    environment does not set them: the emulator reads .env as the device and service programs do."""
    return _Layers(None, env, dotenv_path).env_for_discovery()


def resolve_device_settings(flags: Mapping[str, str | None] | None = None, *,
                            env: Mapping[str, str] | None = None,
                            dotenv_path: str | Path | None = None) -> DeviceSettings:
    """Settings for a device: a connection string, or DPS provisioning, plus CA trust.

    flags maps setting names (IOTHUB_DEVICE_CONNECTION_STRING, PROVISIONING_IDSCOPE, ...) to the
    values given on the command line (None when not given).
    """
    layers = _Layers(flags, env, dotenv_path)
    cs_value = layers.get(DEVICE_CONNECTION_STRING)
    dps_names = (PROVISIONING_IDSCOPE, PROVISIONING_REGISTRATION_ID, PROVISIONING_SYMMETRIC_KEY,
                 PROVISIONING_GROUP_KEY)
    dps_given = {name: layers.get(name) for name in dps_names}

    if cs_value:
        cs = _parse(cs_value, DEVICE_CONNECTION_STRING, "device")
        emulator = None if is_azure_host(cs.host) else _emulator_serving(layers, cs.host)
        return DeviceSettings(cs, None, _ca_for_host(layers, cs.host, emulator), cs_value.source,
                              is_emulator=bool(emulator and emulator.host_name == cs.host))

    if any(dps_given.values()):
        prov = _provisioning_from_layers(layers, dps_given)
        emulator = None if is_azure_host(prov.host) else _emulator_serving(layers, prov.host)
        source = next(v.source for v in dps_given.values() if v)
        return DeviceSettings(None, prov, _ca_for_host(layers, prov.host, emulator), source,
                              is_emulator=bool(emulator and emulator.host_name == prov.host))

    return _emulator_device_settings(layers)


def _provisioning_from_layers(layers: _Layers, given: dict[str, _Value | None]) -> ProvisioningSettings:
    scope = given[PROVISIONING_IDSCOPE]
    if not scope:
        raise SettingsError(f"{PROVISIONING_IDSCOPE} is missing (needed for DPS provisioning)")
    reg = given[PROVISIONING_REGISTRATION_ID] or layers.get(DEVICE_ID)
    if not reg:
        raise SettingsError(f"{PROVISIONING_REGISTRATION_ID} is missing (needed for DPS provisioning)")
    key, group = given[PROVISIONING_SYMMETRIC_KEY], given[PROVISIONING_GROUP_KEY]
    if key and group:
        raise SettingsError(f"set {PROVISIONING_SYMMETRIC_KEY} (individual enrollment) or "
                            f"{PROVISIONING_GROUP_KEY} (group enrollment), not both")
    if not key and not group:
        raise SettingsError(f"{PROVISIONING_SYMMETRIC_KEY} or {PROVISIONING_GROUP_KEY} is missing "
                            "(needed for DPS provisioning)")
    try:
        device_key = derive_device_key(group.value, reg.value) if group else _checked_key(key)
    except SasError:
        name = PROVISIONING_GROUP_KEY if group else PROVISIONING_SYMMETRIC_KEY
        raise SettingsError(f"{name} is not valid base64") from None
    host = layers.get(PROVISIONING_HOST)
    return ProvisioningSettings(host.value if host else GLOBAL_PROVISIONING_HOST, scope.value,
                                reg.value, device_key, from_group_key=bool(group))


def _checked_key(value: _Value) -> str:
    derive_device_key(value.value, "check")  # raises SasError when not base64
    return value.value


def _emulator_device_settings(layers: _Layers) -> DeviceSettings:
    emulator, source = _emulator(layers)
    device_id_value = layers.get(DEVICE_ID)
    device_id = device_id_value.value if device_id_value else wellknown.DEVICE_ID
    if emulator:
        host = emulator.host_name
        ca = _explicit_ca(layers) or Path(emulator.ca_file)
        known = emulator.device_connection_strings.get(device_id)
        group_key, scope = emulator.provisioning_group_key, emulator.provisioning_id_scope
        prov_host = emulator.provisioning_host or host
    else:
        source, host = "well-known emulator defaults", wellknown.HOST_NAME
        ca = _explicit_ca(layers) or emulator_home(layers.env_for_discovery()) / "certs" / "ca.pem"
        known = (wellknown.device_connection_string(host) if device_id == wellknown.DEVICE_ID else None)
        group_key, scope, prov_host = wellknown.DPS_GROUP_KEY, wellknown.DPS_ID_SCOPE, host
    running = emulator is not None
    if known:
        cs = parse_connection_string(known, expect="device", what="emulator device connection string")
        return DeviceSettings(cs, None, ca, source, is_emulator=True, emulator_running=running)
    # Any other device id: provision it through the emulator's well-known group enrollment.
    prov = ProvisioningSettings(prov_host, scope, device_id, derive_device_key(group_key, device_id),
                                from_group_key=True)
    return DeviceSettings(None, prov, ca, source, is_emulator=True, emulator_running=running,
                          emulator=emulator)


def with_registered_key(settings: DeviceSettings) -> DeviceSettings:
    """For one device the local emulator would provision through DPS: when it is already registered
    with other keys (e.g. `iothub-service device create`), its own connection string, with the key read
    from the emulator's registry. DPS, as on Azure, will not re-key a device it did not provision (409).

    One HTTPS request to the emulator: for a single device, not for each device of a fleet.
    """
    emulator, prov = settings.emulator, settings.provisioning
    if emulator is None or prov is None or not prov.from_group_key:
        return settings
    key = registered_device_key(emulator, prov.registration_id, settings.ca_file)
    if not key or key == prov.symmetric_key:
        return settings  # not registered, or registered by DPS itself: DPS takes it
    cs = parse_connection_string(wellknown.device_connection_string(emulator.host_name, prov.registration_id, key),
                                 expect="device", what="emulator device connection string")
    source = f"{settings.source}; key of registered device {prov.registration_id} read from the emulator's registry"
    return replace(settings, connection_string=cs, provisioning=None, source=source)


def resolve_service_settings(flags: Mapping[str, str | None] | None = None, *,
                             env: Mapping[str, str] | None = None,
                             dotenv_path: str | Path | None = None) -> ServiceSettings:
    """Settings for the service side: a policy connection string plus CA trust."""
    layers = _Layers(flags, env, dotenv_path)
    cs_value = layers.get(SERVICE_CONNECTION_STRING)
    if cs_value:
        cs = _parse(cs_value, SERVICE_CONNECTION_STRING, "service")
        emulator = None if is_azure_host(cs.host) else _emulator_serving(layers, cs.host)
        return ServiceSettings(cs, _ca_for_host(layers, cs.host, emulator), cs_value.source,
                               is_emulator=bool(emulator and emulator.host_name == cs.host))
    emulator, source = _emulator(layers)
    if emulator:
        cs = parse_connection_string(emulator.service_connection_string, expect="service",
                                     what="emulator service connection string")
        ca = _explicit_ca(layers) or Path(emulator.ca_file)
        return ServiceSettings(cs, ca, source, is_emulator=True)
    cs = parse_connection_string(wellknown.service_connection_string(), expect="service")
    ca = _explicit_ca(layers) or emulator_home(layers.env_for_discovery()) / "certs" / "ca.pem"
    return ServiceSettings(cs, ca, "well-known emulator defaults", is_emulator=True,
                           emulator_running=False)
