"""The end-to-end demo (`iothub-demo`, `make demo`): the tutorial stories told with the real programs
(emulator, device listeners, service CLI) as subprocesses on a throwaway local emulator.

Its own package so that the service CLI, which talks to Azure IoT Hub, never depends on the emulator."""
