"""Loopback addresses and ports for emulators: a 127.0.0.X of one's own for a throwaway emulator (the demo,
the tests, the benchmarks), and whether this process may bind IoT Hub's port 443.

The device SDK always dials port 8883 and MQTT over WebSockets always dials 443, so two emulators on one
machine need two addresses: a user's emulator on 127.0.0.1 and a throwaway one on a random 127.0.0.X never meet.
"""

from __future__ import annotations

import errno
import random
import socket
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from hubsettings import wellknown

#: What an emulator with default settings binds: MQTT, AMQP, and 443 or (where 443 is not permitted) the
#: fallback.
EMULATOR_PORTS = (wellknown.MQTT_PORT, wellknown.AMQP_PORT, wellknown.REST_PORT, wellknown.REST_FALLBACK_PORT)


class NoFreeLoopbackAddress(RuntimeError):
    """Every address tried had one of the ports taken."""


def bind_error(address: str, port: int) -> int | None:
    """None when address:port can be bound right now, else the errno (EACCES: a privileged port without
    the right; EADDRINUSE: taken; EADDRNOTAVAIL: no such local address)."""
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
        # As the emulator binds (asyncio sets SO_REUSEADDR): old TIME_WAIT sockets don't count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as e:
            return e.errno or errno.EINVAL
    return None


def may_bind(port: int, address: str = wellknown.BIND_ADDRESS) -> bool:
    """True unless binding port is refused for lack of privilege (a port taken by another program is
    still permitted)."""
    return bind_error(address, port) not in (errno.EACCES, errno.EPERM)


def ports_free(address: str, ports: Iterable[int]) -> bool:
    """True when every port can be bound on address right now. A port this process may not bind at all
    counts as free: the emulator does not bind it (443 falls back; see how_to_allow_port_443)."""
    return all(bind_error(address, port) in (None, errno.EACCES, errno.EPERM) for port in ports)


def free_loopback_address(ports: Sequence[int] = EMULATOR_PORTS, *, exclude: Iterable[str] = (),
                          tries: int = 40, fall_back_to_127_0_0_1: bool = False,
                          rng: random.Random | None = None) -> str:
    """A random 127.0.0.X (X in 2..254) on which every port is free right now.

    fall_back_to_127_0_0_1: where only 127.0.0.1 exists (macOS without aliases), use it when its ports
    are free (tests do; the demo doesn't, so it never takes the user's usual address).
    """
    wanted, taken = tuple(ports), set(exclude)
    candidates = [f"127.0.0.{last}" for last in (rng or random).sample(range(2, 255), tries)]
    if fall_back_to_127_0_0_1:
        candidates.append("127.0.0.1")
    for address in candidates:
        if address not in taken and ports_free(address, wanted):
            return address
    raise NoFreeLoopbackAddress(f"no loopback address 127.0.0.X with ports {', '.join(map(str, wanted))} free "
                                f"(tried {len(candidates)})")


def how_to_allow_port_443() -> str:
    """The one command that lets an unprivileged emulator bind 443 (then restart it)."""
    if sys.platform.startswith("linux"):
        return "sudo sysctl -w net.ipv4.ip_unprivileged_port_start=443"
    python = Path(sys.executable).resolve()
    return f"run the emulator as an administrator (or grant {python} the right to bind ports below 1024)"
