"""EmulatorServer's housekeeping task (method deadlines, token expiries) survives a failing pass."""

import asyncio
import logging

import pytest

from emulator import server as server_module
from emulator.server import EmulatorServer


class Failing:
    """Raises on its first `failures` calls, then counts the calls that succeed."""

    def __init__(self, failures):
        self.failures = failures
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("bug in a housekeeping step")


class FakeHub:
    def __init__(self):
        self.expire_due = Failing(2)


class FakeFront:
    def __init__(self):
        self.expire_tokens = Failing(1)


async def test_housekeeping_keeps_running_after_a_step_raises(monkeypatch, caplog):
    monkeypatch.setattr(server_module, "HOUSEKEEPING_SECONDS", 0)
    server = EmulatorServer()
    server.hub, server.front = FakeHub(), FakeFront()
    task = asyncio.create_task(server._expire_deadlines())
    try:
        with caplog.at_level(logging.ERROR, logger="emulator"):
            async def passes_after_the_failures():
                while server.hub.expire_due.calls < 5 or server.front.expire_tokens.calls < 5:
                    assert not task.done(), "the housekeeping task died"
                    await asyncio.sleep(0)
            await asyncio.wait_for(passes_after_the_failures(), 10)
        assert not task.done()
        # The hub's failure did not skip the token check of the same pass.
        assert server.front.expire_tokens.calls >= server.hub.expire_due.calls - 1
        assert sum("housekeeping" in r.getMessage() for r in caplog.records) == 3  # each failure logged
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
