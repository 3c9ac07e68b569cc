"""The emulator's discovery file: how the device and service programs find a running local emulator.

The emulator writes it at start and removes it at a clean stop; the settings read it when nothing else
is configured. One emulator per address: the default address (127.0.0.1) keeps its data and discovery
file in the emulator home (~/.iothub-emulator, or $IOTHUB_EMULATOR_HOME); any other address in
<home>/hubs/<address>/, so a second emulator never touches the first one's files.
$IOTHUB_EMULATOR_DISCOVERY names one file explicitly. It holds only the emulator's well-known development
credentials (file mode 0600 all the same).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

DISCOVERY_ENV = "IOTHUB_EMULATOR_DISCOVERY"
HOME_ENV = "IOTHUB_EMULATOR_HOME"
DEFAULT_ADDRESS = "127.0.0.1"
DISCOVERY_NAME = "discovery.json"
HUBS_DIR = "hubs"


def expand_path(value: str) -> Path:
    """A path setting as a shell would read it: `$VARS` and a leading `~` expanded."""
    return Path(os.path.expanduser(os.path.expandvars(value)))


def emulator_home(env: Mapping[str, str] | None = None) -> Path:
    """The emulator's home: the default address's data directory, and the parent of the others'."""
    env = os.environ if env is None else env
    value = env.get(HOME_ENV)
    return expand_path(value) if value else Path.home() / ".iothub-emulator"


def discovery_path(env: Mapping[str, str] | None = None) -> Path:
    """The default address's discovery file, or the one $IOTHUB_EMULATOR_DISCOVERY names."""
    env = os.environ if env is None else env
    value = env.get(DISCOVERY_ENV)
    return expand_path(value) if value else emulator_home(env) / DISCOVERY_NAME


def default_data_dir(address: str, env: Mapping[str, str] | None = None) -> Path:
    """Where an emulator on `address` keeps its data unless told otherwise."""
    home = emulator_home(env)
    return home if address == DEFAULT_ADDRESS else home / HUBS_DIR / _safe(address)


def default_discovery_file(address: str, env: Mapping[str, str] | None = None) -> Path:
    """Where an emulator on `address` writes its discovery file unless told otherwise."""
    env = os.environ if env is None else env
    if env.get(DISCOVERY_ENV) or address == DEFAULT_ADDRESS:
        return discovery_path(env)
    return default_data_dir(address, env) / DISCOVERY_NAME


def other_discovery_files(env: Mapping[str, str] | None = None) -> list[Path]:
    """The discovery files of emulators on other addresses (<home>/hubs/*/discovery.json)."""
    return sorted((emulator_home(env) / HUBS_DIR).glob(f"*/{DISCOVERY_NAME}"))


def _safe(address: str) -> str:
    return "".join(c if c.isalnum() or c in ".-_" else "_" for c in address)


@dataclass
class EmulatorInfo:
    host_name: str
    mqtt_address: str
    mqtt_port: int
    rest_address: str
    rest_port: int
    ca_file: str
    service_connection_string: str
    device_connection_strings: dict[str, str] = field(default_factory=dict)
    provisioning_host: str = ""
    provisioning_id_scope: str = ""
    provisioning_group_key: str = ""
    data_dir: str | None = None
    pid: int | None = None
    event_hub_connection_string: str = ""  # the built-in Event Hubs-compatible endpoint ("" without AMQP)

    def is_alive(self) -> bool:
        """True when the process that wrote the file still runs (or no pid was recorded)."""
        if not self.pid:
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def write_discovery(info: EmulatorInfo, path: Path | None = None) -> Path:
    path = path or discovery_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(info), f, indent=2)
    os.replace(tmp, path)
    return path


def read_discovery(path: Path | None = None) -> EmulatorInfo | None:
    """The running emulator's info, or None when there is no usable discovery file."""
    path = path or discovery_path()
    try:
        data = json.loads(path.read_text())
        info = EmulatorInfo(**data)
    except (OSError, ValueError, TypeError):
        return None
    return info if info.is_alive() else None


def remove_discovery(path: Path | None = None, pid: int | None = None) -> None:
    """Remove the file if it is ours (same pid), so a second emulator's file is left alone."""
    path = path or discovery_path()
    try:
        if pid is not None and json.loads(path.read_text()).get("pid") != pid:
            return
        path.unlink()
    except (OSError, ValueError):
        pass
