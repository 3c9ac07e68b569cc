"""Direct-method calls in flight, correlated by $rid, with IoT Hub's connect and response timeouts.

No I/O and no event loop: a call is created, dispatched to the device when it is (or comes) online,
completed by the device's response, or failed by `expire(now)` once a deadline passes. Whoever waits
(an asyncio front, a job scheduler) registers a done-callback.
"""

from __future__ import annotations

import heapq
import itertools
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hubsettings import limits

from .clock import Clock
from .errors import ArgumentInvalid, DeviceNotOnline, GatewayTimeout, HubError, MessageTooLarge

#: The deadline heap is rebuilt from the calls in flight once stale entries (answered, cancelled or
#: dispatched calls) outnumber them by this factor (plus a little slack), so it stays O(calls in flight).
DEADLINE_HEAP_SLACK = 64


@dataclass(frozen=True)
class MethodResult:
    status: int
    payload: Any

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "payload": self.payload}


@dataclass(eq=False)
class MethodCall:
    device_id: str
    method_name: str
    payload: Any
    rid: str
    connect_deadline: float
    response_timeout: float
    response_deadline: float | None = None  # set when the request reaches the device
    body: bytes = b""  # the payload as sent to the device: JSON, nothing when the service sent none
    result: MethodResult | None = None
    error: HubError | None = None
    _callbacks: list[Callable[[MethodCall], None]] = field(default_factory=list)

    @property
    def dispatched(self) -> bool:
        return self.response_deadline is not None

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None

    def request_body(self) -> bytes:
        """The payload as sent to the device (JSON; nothing when the service sent none)."""
        return self.body

    def add_done_callback(self, callback: Callable[[MethodCall], None]) -> None:
        if self.done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def _finish(self, result: MethodResult | None, error: HubError | None) -> None:
        self.result, self.error = result, error
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)


def _check_range(name: str, value: float, bounds: tuple[int, int]) -> None:
    if not isinstance(value, (int, float)) or not bounds[0] <= value <= bounds[1]:
        raise ArgumentInvalid(f"{name} must be between {bounds[0]} and {bounds[1]} seconds")


def parse_response_payload(body: bytes) -> Any:
    """The device's response body: JSON when it is JSON, else the text as is, None when empty."""
    if not body:
        return None
    text = body.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested too deep to decode: keep the text
        return text


class MethodCalls:
    """The calls in flight, by device and $rid."""

    def __init__(self, clock: Clock):
        self._clock = clock
        self._calls: dict[tuple[str, str], MethodCall] = {}
        # (deadline, start order, key): each call's connect deadline, then its response deadline once
        # dispatched, earliest first. Lazy deletion: an entry is checked against the call in flight when
        # it comes due, so completing or cancelling a call removes nothing here and expire() only
        # touches due entries.
        self._deadlines: list[tuple[float, int, tuple[str, str]]] = []
        self._order: dict[tuple[str, str], int] = {}  # key -> start order (expire() reports in it)
        self._started = itertools.count()
        # $rid of the requests: a counter from a random start, so that a late answer a device sends after
        # an emulator restart cannot be taken for the answer to a new call (and no uuid per call).
        self._request_ids = itertools.count(secrets.randbits(48))

    def __len__(self) -> int:
        return len(self._calls)

    def start(self, device_id: str, method_name: str, payload: Any, *, online: bool,
              response_timeout: float = limits.METHOD_RESPONSE_TIMEOUT_DEFAULT,
              connect_timeout: float = limits.METHOD_CONNECT_TIMEOUT_DEFAULT) -> MethodCall:
        if not method_name or not isinstance(method_name, str):
            raise ArgumentInvalid("methodName is required")
        _check_range("responseTimeoutInSeconds", response_timeout, limits.METHOD_RESPONSE_TIMEOUT_RANGE)
        _check_range("connectTimeoutInSeconds", connect_timeout, limits.METHOD_CONNECT_TIMEOUT_RANGE)
        try:
            encoded = json.dumps(payload).encode("utf-8")  # once: checked here, sent as it is
        except (TypeError, ValueError):
            raise ArgumentInvalid("The method payload must be JSON") from None
        if len(encoded) > limits.METHOD_PAYLOAD_MAX_BYTES:
            raise MessageTooLarge(f"The method payload exceeds {limits.METHOD_PAYLOAD_MAX_BYTES} bytes")
        if not online and connect_timeout == 0:
            raise DeviceNotOnline(f"Timed out waiting for device {device_id} to connect")
        call = MethodCall(device_id, method_name, payload, f"{next(self._request_ids):x}",
                          connect_deadline=self._clock() + connect_timeout,
                          response_timeout=response_timeout,
                          body=b"" if payload is None or payload == "" else encoded)
        key = (device_id, call.rid)
        self._calls[key] = call
        self._order[key] = next(self._started)
        if not online:  # an online device gets the call at once (mark_dispatched): no connect deadline
            self._track_deadline(key, call.connect_deadline)
        return call

    def mark_dispatched(self, call: MethodCall) -> None:
        call.response_deadline = self._clock() + call.response_timeout
        key = (call.device_id, call.rid)
        if self._calls.get(key) is call:
            self._track_deadline(key, call.response_deadline)

    def _track_deadline(self, key: tuple[str, str], deadline: float) -> None:
        heap = self._deadlines
        heapq.heappush(heap, (deadline, self._order[key], key))
        if len(heap) > 2 * len(self._calls) + DEADLINE_HEAP_SLACK:  # mostly stale entries: rebuild
            heap[:] = [(c.response_deadline if c.dispatched else c.connect_deadline, self._order[k], k)
                       for k, c in self._calls.items()]
            heapq.heapify(heap)

    def _forget(self, key: tuple[str, str]) -> MethodCall | None:
        self._order.pop(key, None)
        return self._calls.pop(key, None)

    def waiting_for(self, device_id: str) -> list[MethodCall]:
        """Calls that wait for this device to connect (not yet sent to it)."""
        return [c for (d, _), c in self._calls.items() if d == device_id and not c.dispatched]

    def complete(self, device_id: str, rid: str, status: int, payload: Any) -> bool:
        """The device answered; False when no such call is in flight (late, duplicate or foreign)."""
        call = self._forget((device_id, rid))
        if call is None:
            return False
        call._finish(MethodResult(status, payload), None)
        return True

    def cancel(self, call: MethodCall) -> bool:
        """Forget a call whose caller gave up (job cancelled, time limit): not sent to the device later,
        and a late answer is ignored. False when it was no longer in flight."""
        removed = self._forget((call.device_id, call.rid)) is not None
        call._callbacks.clear()
        return removed

    def fail_device(self, device_id: str, error: HubError) -> None:
        """Fail every call for a device (e.g. deleted)."""
        for key in [k for k in self._calls if k[0] == device_id]:
            self._forget(key)._finish(None, error)  # type: ignore[union-attr]

    def expire(self) -> list[MethodCall]:
        """Fail the calls whose deadline has passed: 404103 if never delivered, 504101 if unanswered."""
        now = self._clock()
        heap = self._deadlines
        due: dict[tuple[str, str], int] = {}  # key -> start order, for the calls with an entry due
        while heap and heap[0][0] <= now:
            _, order, key = heapq.heappop(heap)
            due[key] = order
        expired = []
        # Start order, as a scan of all calls in flight would find them; each checked as that scan would
        # (an entry is stale when its call finished, or its connect deadline after it was dispatched).
        for key in sorted(due, key=due.__getitem__):
            call = self._calls.get(key)
            if call is None:
                continue
            if not call.dispatched and now >= call.connect_deadline:
                error: HubError = DeviceNotOnline(f"Timed out waiting for device {call.device_id} to connect")
            elif call.dispatched and now >= call.response_deadline:  # type: ignore[operator]
                error = GatewayTimeout(f"Timed out waiting for the response from device {call.device_id}")
            else:
                continue
            self._forget(key)
            call._finish(None, error)
            expired.append(call)
        return expired
