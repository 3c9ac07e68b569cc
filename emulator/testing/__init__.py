"""Run the emulator from your own tests: `from emulator.testing import Emulator` (see docs/testing.md).

- Emulator: in a background thread of the test process (the usual choice: fast, and the test can read
  what devices sent);
- EmulatorProcess: `python -m emulator` as a child process (restarts, SIGKILL, the real command line);
- RealHub: the same handle on a real Azure IoT hub (the pytest plugin's --iothub-connection-string).
The pytest plugin (emulator.pytest_plugin) builds its `iothub` and `iothub_device` fixtures on these.
"""

from .embedded import Emulator
from .identity import DeviceIdentity, EmulatorStartError
from .process import EmulatorProcess
from .real_hub import NotAvailableOnRealHub, RealHub
from .trust import trusting

__all__ = ["DeviceIdentity", "Emulator", "EmulatorProcess", "EmulatorStartError", "NotAvailableOnRealHub",
           "RealHub", "trusting"]
