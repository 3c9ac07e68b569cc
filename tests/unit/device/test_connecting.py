"""The first connection: exponential backoff within a bounded time, no retry of refused credentials."""

import pytest
from azure.iot.device import exceptions as sdk_errors

from device.connecting import Backoff, with_backoff
from device.errors import EXIT_AUTH, EXIT_UNREACHABLE, AuthenticationRefused, HubUnreachable

from .fakes import FakeTime


def refused():
    error = sdk_errors.ConnectionFailedError("transport failed")
    error.__cause__ = ConnectionRefusedError(111, "Connection refused")
    return error


class Attempts:
    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self):
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else refused()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


async def run(attempt, time, lines, backoff=Backoff(timeout=60), hint=""):
    return await with_backoff(attempt, what="connect", target="IoT hub localhost", backoff=backoff,
                              say=lines.append, hint=hint, sleep=time.sleep, clock=time.clock)


def test_delays_grow_exponentially_up_to_the_maximum():
    backoff = Backoff(initial=1, factor=2, maximum=15)
    assert [backoff.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 15, 15]


async def test_retries_with_backoff_until_connected_one_line_per_attempt():
    time, lines = FakeTime(), []
    attempt = Attempts(refused(), refused(), refused(), "connected")
    assert await run(attempt, time, lines) == "connected"
    assert attempt.calls == 4
    assert time.sleeps == [1, 2, 4]
    assert lines == [
        "connect attempt 1 failed: [Errno 111] Connection refused; retrying in 1 s",
        "connect attempt 2 failed: [Errno 111] Connection refused; retrying in 2 s",
        "connect attempt 3 failed: [Errno 111] Connection refused; retrying in 4 s",
    ]


async def test_gives_up_after_the_timeout_with_the_last_error_and_the_hint():
    time, lines = FakeTime(), []
    attempt = Attempts()  # always refused
    with pytest.raises(HubUnreachable) as raised:
        await run(attempt, time, lines, backoff=Backoff(timeout=20, initial=1, factor=2, maximum=15),
                  hint="Start it with `iothub-emulator`")
    # 1 + 2 + 4 + 8 = 15 s, then a last try at the deadline (5 s later), then no more.
    assert time.sleeps == [1, 2, 4, 8, 5]
    assert attempt.calls == 6 and time.now == 20
    assert lines[-1] == "connect attempt 6 failed: [Errno 111] Connection refused; giving up after 20 s"
    message = str(raised.value)
    assert message == ("could not reach IoT hub localhost within 20 s (last error: [Errno 111] Connection "
                       "refused). Start it with `iothub-emulator`")
    assert raised.value.exit_code == EXIT_UNREACHABLE


async def test_refused_credentials_fail_at_once():
    time, lines = FakeTime(), []
    attempt = Attempts(sdk_errors.CredentialError("CONNACK 5: not authorized"))
    with pytest.raises(AuthenticationRefused) as raised:
        await run(attempt, time, lines)
    assert attempt.calls == 1 and time.sleeps == [] and lines == []
    assert "refused the device's credentials" in str(raised.value) and raised.value.exit_code == EXIT_AUTH


async def test_a_programming_error_is_not_retried():
    time, lines = FakeTime(), []
    attempt = Attempts(TypeError("bug"))
    with pytest.raises(TypeError):
        await run(attempt, time, lines)
    assert attempt.calls == 1
