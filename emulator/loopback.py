"""A loopback address of one's own for a throwaway emulator (the demo, the tests, the benchmarks).

The device SDK always dials port 8883, so two emulators on one machine need two addresses: a user's
emulator on 127.0.0.1 and a throwaway one on a random 127.0.0.X never meet.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterable, Sequence

from hubsettings import wellknown

EMULATOR_PORTS = (wellknown.MQTT_PORT, wellknown.REST_PORT)


class NoFreeLoopbackAddress(RuntimeError):
    """Every address tried had one of the ports taken."""


def ports_free(address: str, ports: Iterable[int]) -> bool:
    """True when every port can be bound on address right now. PermissionError (a privileged port
    without the right) propagates: it is not "taken", and retrying elsewhere will not help."""
    for port in ports:
        with socket.socket() as probe:
            # As the emulator binds (asyncio sets SO_REUSEADDR): old TIME_WAIT sockets don't count.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except PermissionError:
                raise
            except OSError:
                return False
    return True


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
