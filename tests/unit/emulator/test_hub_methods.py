"""Direct methods in flight: dispatch, correlation by $rid, connect and response timeouts (fake clock)."""

import asyncio

import pytest

from emulator.hub import (ArgumentInvalid, DeviceNotFound, DeviceNotOnline, FakeClock, GatewayTimeout, Hub,
                          MessageTooLarge)
from tests.unit.emulator.hub_fakes import RecordingConnections


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def connections():
    return RecordingConnections()


@pytest.fixture
def hub(clock, connections):
    hub = Hub(clock=clock)
    hub.attach_connections(connections)
    hub.create_device("d1")
    return hub


def test_offline_device_without_connect_timeout_is_404103(hub):
    with pytest.raises(DeviceNotOnline) as info:
        hub.start_method("d1", "reboot")
    assert (info.value.error_code, info.value.http_status) == (404103, 404)


def test_unknown_device_is_404001(hub):
    with pytest.raises(DeviceNotFound):
        hub.start_method("ghost", "reboot")


def test_online_call_is_dispatched_and_completed_by_its_rid(hub, connections):
    hub.device_connected("d1")
    call = hub.start_method("d1", "reboot", {"delay": 1})
    assert connections.methods == [("d1", call)]
    assert call.request_body() == b'{"delay": 1}'
    assert not hub.method_response("d1", "some-other-rid", 200, b"{}")
    assert not hub.method_response("d2", call.rid, 200, b"{}")  # another device cannot answer it
    assert hub.method_response("d1", call.rid, 201, b'{"ok": true}')
    assert call.result.status == 201 and call.result.payload == {"ok": True}
    assert not hub.method_response("d1", call.rid, 200, b"{}")  # a late duplicate is ignored


def test_response_timeout_is_504101(hub, clock):
    hub.device_connected("d1")
    call = hub.start_method("d1", "slow", response_timeout=5)
    clock.advance(4.9)
    assert hub.expire_due() == []
    clock.advance(0.2)
    assert hub.expire_due() == [call]
    assert isinstance(call.error, GatewayTimeout) and call.error.error_code == 504101


def test_connect_timeout_waits_for_the_device_then_dispatches(hub, clock, connections):
    call = hub.start_method("d1", "reboot", connect_timeout=10, response_timeout=5)
    clock.advance(9)
    assert hub.expire_due() == [] and connections.methods == []
    hub.device_connected("d1")
    assert connections.methods == [("d1", call)]
    clock.advance(4)  # the response timeout starts when the request is sent
    assert hub.expire_due() == []
    clock.advance(2)
    assert isinstance(hub.expire_due()[0].error, GatewayTimeout)


def test_connect_timeout_expiry_is_404103(hub, clock):
    call = hub.start_method("d1", "reboot", connect_timeout=3)
    clock.advance(3)
    hub.expire_due()
    assert isinstance(call.error, DeviceNotOnline)


@pytest.mark.parametrize("kwargs", [{"response_timeout": 4}, {"response_timeout": 301},
                                    {"connect_timeout": -1}, {"connect_timeout": 301}])
def test_timeouts_out_of_range_are_refused(hub, kwargs):
    hub.device_connected("d1")
    with pytest.raises(ArgumentInvalid):
        hub.start_method("d1", "m", **kwargs)


def test_payload_over_128_kb_is_refused(hub):
    hub.device_connected("d1")
    with pytest.raises(MessageTooLarge):
        hub.start_method("d1", "m", "x" * (128 * 1024))


def test_non_json_response_payload_is_kept_as_text_and_empty_as_none(hub):
    hub.device_connected("d1")
    text_call, empty_call = hub.start_method("d1", "a"), hub.start_method("d1", "b")
    hub.method_response("d1", text_call.rid, 200, b"plain")
    hub.method_response("d1", empty_call.rid, 200, b"")
    assert text_call.result.payload == "plain" and empty_call.result.payload is None


def test_deleting_the_device_fails_its_calls(hub):
    call = hub.start_method("d1", "m", connect_timeout=30)
    hub.delete_device("d1")
    assert isinstance(call.error, DeviceNotFound)


async def test_invoke_method_awaits_the_device_response(hub, connections):
    hub.device_connected("d1")
    task = asyncio.ensure_future(hub.invoke_method("d1", "ping", None))
    while not connections.methods:
        await asyncio.sleep(0)
    _, call = connections.methods[0]
    assert call.request_body() == b""
    hub.method_response("d1", call.rid, 200, b"null")
    result = await asyncio.wait_for(task, 10)
    assert result.to_json() == {"status": 200, "payload": None}


async def test_invoke_method_raises_the_timeout_error(hub, clock, connections):
    hub.device_connected("d1")
    task = asyncio.ensure_future(hub.invoke_method("d1", "ping", response_timeout=5))
    while not connections.methods:
        await asyncio.sleep(0)
    clock.advance(6)
    hub.expire_due()
    with pytest.raises(GatewayTimeout):
        await asyncio.wait_for(task, 10)


async def test_job_target_adapter_runs_methods_and_twin_updates(hub, connections):
    from emulator.hub.job_target import HubJobTarget
    target = HubJobTarget(hub)
    hub.device_connected("d1")
    task = asyncio.ensure_future(target.invoke_method("d1", "reboot", {"a": 1}, 30, 0))
    while not connections.methods:
        await asyncio.sleep(0)
    hub.method_response("d1", connections.methods[0][1].rid, 200, b'"ok"')
    assert await asyncio.wait_for(task, 10) == (200, "ok")
    target.update_twin("d1", {"etag": "*", "tags": {"t": 1}, "properties": {"desired": {"x": 1}}})
    assert [d["tags"] for d in hub.twin_documents()] == [{"t": 1}]
    assert connections.desired[-1] == ("d1", {"x": 1, "$version": 2})


async def test_cancelled_invoke_forgets_the_call_so_the_device_never_gets_it(hub, connections):
    # A job's cancel or time limit cancels invoke_method: the call waiting for its device must go too.
    task = asyncio.ensure_future(hub.invoke_method("d1", "lockDoor", {}, response_timeout=30, connect_timeout=60))
    while len(hub.methods) == 0:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert len(hub.methods) == 0
    hub.device_connected("d1")  # the device comes online later
    assert connections.methods == []


async def test_cancelled_invoke_of_a_dispatched_call_ignores_the_late_answer(hub, connections):
    hub.device_connected("d1")
    task = asyncio.ensure_future(hub.invoke_method("d1", "slow", None))
    while not connections.methods:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert len(hub.methods) == 0
    assert not hub.method_response("d1", connections.methods[0][1].rid, 200, b"{}")


# ---- deadlines: each pass touches only the calls that are due (heap with lazy deletion) -------------

class CountingDispatched:
    """Counts how often any call's `dispatched` is read: what a pass over the calls in flight costs."""

    def __init__(self, monkeypatch):
        from emulator.hub.methods import MethodCall
        self.reads = 0
        original = MethodCall.dispatched.fget

        def counted(call):
            self.reads += 1
            return original(call)

        monkeypatch.setattr(MethodCall, "dispatched", property(counted))


def test_a_pass_over_many_calls_in_flight_touches_only_the_due_ones(hub, clock, monkeypatch):
    hub.device_connected("d1")
    idle = [hub.start_method("d1", "slow", response_timeout=300) for _ in range(500)]
    due = hub.start_method("d1", "quick", response_timeout=5)
    counter = CountingDispatched(monkeypatch)
    for _ in range(10):
        clock.advance(0.2)
        assert hub.expire_due() == []
    assert counter.reads == 0  # ten passes over 501 calls, none due: none looked at
    clock.advance(3.1)
    assert hub.expire_due() == [due]
    assert counter.reads <= 2  # only the due call
    assert not any(call.done for call in idle)


def test_calls_that_ended_before_their_deadline_never_fire(hub, clock):
    hub.device_connected("d1")
    answered = hub.start_method("d1", "a", response_timeout=5)
    cancelled = hub.start_method("d1", "b", response_timeout=5)
    deleted = hub.start_method("d1", "c", response_timeout=5)
    hub.method_response("d1", answered.rid, 200, b"{}")
    hub.methods.cancel(cancelled)
    hub.methods.fail_device("d1", DeviceNotFound("gone"))
    finished = []
    for call in (answered, cancelled, deleted):
        call.add_done_callback(finished.append)  # already done: called at once, never again
    clock.advance(10)
    assert hub.expire_due() == []
    assert finished == [answered, deleted] and cancelled.error is None and cancelled.result is None
    assert answered.result.status == 200 and isinstance(deleted.error, DeviceNotFound)


def test_a_dispatched_call_is_not_failed_at_its_old_connect_deadline(hub, clock, connections):
    call = hub.start_method("d1", "reboot", connect_timeout=10, response_timeout=30)
    clock.advance(1)
    hub.device_connected("d1")  # dispatched: the response deadline (t=31) replaces the connect one (t=10)
    clock.advance(9)
    assert hub.expire_due() == [] and not call.done
    clock.advance(20.9)
    assert hub.expire_due() == []
    clock.advance(0.1)
    assert hub.expire_due() == [call] and isinstance(call.error, GatewayTimeout)


def test_calls_expiring_in_one_pass_are_reported_in_start_order(hub, clock):
    hub.device_connected("d1")
    hub.create_device("d2")
    first = hub.start_method("d1", "late-deadline", response_timeout=20)
    waiting = hub.start_method("d2", "never-delivered", connect_timeout=10)
    second = hub.start_method("d1", "early-deadline", response_timeout=5)
    clock.advance(25)
    assert hub.expire_due() == [first, waiting, second]
    assert isinstance(waiting.error, DeviceNotOnline) and isinstance(second.error, GatewayTimeout)


def test_the_deadline_heap_stays_the_size_of_the_calls_in_flight(hub, clock):
    from emulator.hub.methods import DEADLINE_HEAP_SLACK
    hub.device_connected("d1")
    kept = hub.start_method("d1", "kept", response_timeout=300)
    for _ in range(2000):  # answered at once: each leaves stale entries behind
        call = hub.start_method("d1", "m", response_timeout=300)
        hub.method_response("d1", call.rid, 200, b"")
    assert len(hub.methods) == 1
    assert len(hub.methods._deadlines) <= 2 * len(hub.methods) + DEADLINE_HEAP_SLACK + 2
    clock.advance(300)
    assert hub.expire_due() == [kept]
