"""The emulator's discovery file: how the device and service programs find a running local emulator.

The emulator writes it at start and removes it at a clean stop; the settings read it when nothing else
is configured. Location: $IOTHUB_EMULATOR_DISCOVERY, else ~/.iothub-emulator/discovery.json. It holds
only the emulator's well-known development credentials (file mode 0600 all the same).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

DISCOVERY_ENV = "IOTHUB_EMULATOR_DISCOVERY"
HOME_ENV = "IOTHUB_EMULATOR_HOME"


def emulator_home(env: dict[str, str] | None = None) -> Path:
    """The emulator's default data directory (certificates, SQLite store, discovery file)."""
    env = os.environ if env is None else env
    return Path(env.get(HOME_ENV) or Path.home() / ".iothub-emulator")


def discovery_path(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get(DISCOVERY_ENV) or emulator_home(env) / "discovery.json")


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
