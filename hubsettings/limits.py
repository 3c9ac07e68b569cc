"""IoT Hub's documented limits, in one place for the emulator (which enforces them) and the service
CLI (which checks its options against them before calling the hub).

Direct methods and jobs (IoT Hub direct-method and jobs docs): the payload is at most 128 KB of JSON,
the response timeout 5..300 s (default 30), the connect timeout 0..300 s (default 0: the device must
be online). Device twins (IoT Hub quotas): desired and reported properties up to 32 KB each, tags up
to 8 KB, objects nested at most 10 levels.
"""

from __future__ import annotations

METHOD_PAYLOAD_MAX_BYTES = 128 * 1024
METHOD_RESPONSE_TIMEOUT_RANGE = (5, 300)  # seconds, inclusive
METHOD_CONNECT_TIMEOUT_RANGE = (0, 300)  # seconds, inclusive
METHOD_RESPONSE_TIMEOUT_DEFAULT = 30
METHOD_CONNECT_TIMEOUT_DEFAULT = 0

TWIN_SECTION_MAX_BYTES = 32 * 1024  # desired and reported properties, each
TWIN_TAGS_MAX_BYTES = 8 * 1024
TWIN_MAX_DEPTH = 10
