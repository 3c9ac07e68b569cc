"""The fleet engine's pure parts: pacing (rate, retry jitter), topics, the connection-strings file,
the progress line and the summary."""

import io
import random

import pytest

from device.errors import EXIT_SETTINGS, SettingsProblem
from device.fleet import topics
from device.fleet.pacing import Gate, RateLimit, Retry
from device.fleet.progress import Counts, Progress
from device.fleet.sources import read_connection_strings
from device.fleet.stats import FleetStats, summary_line
from hubsettings import resolve_device_settings

KEY = "8cc0Q0uyQZXpjwRZmcbS7ylk+eo0FLauFovl2gd1Vbc="


class Clock:
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def __call__(self):
        return self.now

    async def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


async def test_the_rate_limit_spaces_starts_evenly():
    clock = Clock()
    limit = RateLimit(4, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        await limit.wait()
    assert clock.sleeps == [0.25, 0.25, 0.25, 0.25]


async def test_no_rate_means_no_waiting():
    clock = Clock()
    gate = Gate(2, None, clock=clock, sleep=clock.sleep)
    async with gate.slot():
        pass
    assert clock.sleeps == []


def test_retry_delays_grow_to_a_cap_and_are_jittered_below_it():
    retry = Retry(initial=1, factor=2, maximum=8, jitter=0.5)
    rng = random.Random(7)
    delays = [retry.delay(n, rng) for n in range(1, 7)]
    ceilings = [1, 2, 4, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings)), delays
    assert len({round(d, 6) for d in delays[3:]}) == 3  # the same ceiling, different waits
    assert Retry(jitter=0).delay(3) == 4


def test_topics_follow_iot_hub():
    assert topics.device_subscriptions("d1") == ("$iothub/methods/POST/#", "$iothub/twin/PATCH/properties/desired/#",
                                                 "$iothub/twin/res/#", "devices/d1/messages/devicebound/#")
    assert topics.hub_username("h.example", "d1").startswith("h.example/d1/?api-version=2021-04-12&DeviceClientType=")
    assert topics.dps_username("0ne1", "r1").startswith("0ne1/registrations/r1/api-version=2019-03-31&ClientVersion=")
    assert topics.rid_of("$iothub/twin/res/204/?$rid=5&$version=2") == "5"
    assert topics.status_of("$iothub/twin/res/204/?$rid=5", topics.TWIN_RESPONSES) == 204
    assert topics.method_name_of("$iothub/methods/POST/lockDoor/?$rid=x") == "lockDoor"
    assert topics.telemetry("d1", {"$.ct": "application/json", "$.ce": "utf-8"}) == \
        "devices/d1/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8"
    assert topics.query_of("$dps/registrations/res/202/?$rid=1&retry-after=3") == {"$rid": "1", "retry-after": "3"}


def _file(tmp_path, text):
    path = tmp_path / "devices.txt"
    path.write_text(text)
    return path


def test_a_connection_strings_file_gives_one_device_per_line(tmp_path, monkeypatch):
    monkeypatch.setenv("IOTHUB_EMULATOR_HOME", str(tmp_path / "home"))
    path = _file(tmp_path, "# fleet\n\n" + "".join(
        f"HostName=myhub.azure-devices.net;DeviceId=d{i};SharedAccessKey={KEY}\n" for i in range(3)))
    devices = read_connection_strings(path, resolve_device_settings)
    assert [d.device_id for d in devices] == ["d0", "d1", "d2"]
    assert all(d.connection_string.host_name == "myhub.azure-devices.net" and not d.is_emulator for d in devices)


@pytest.mark.parametrize("text, expected", [
    (f"HostName=h.azure-devices.net;DeviceId=a;SharedAccessKey={KEY}\nHostName=h.azure-devices.net;DeviceId=b;"
     f"SharedAcessKey={KEY}\n", "line 2: unknown part 'SharedAcessKey' (HostName=h.azure-devices.net;DeviceId=b;SharedAcessKey=8cc0"),
    (f"HostName=h.azure-devices.net;SharedAccessKeyName=owner;SharedAccessKey={KEY}\n", "line 1"),
    (f"HostName=h.azure-devices.net;DeviceId=a;SharedAccessKey={KEY}\n"
     f"HostName=h.azure-devices.net;DeviceId=a;SharedAccessKey={KEY}\n", "line 2: device a is also on line 1"),
    ("# nothing\n\n", "holds no connection strings"),
])
def test_a_bad_connection_strings_file_names_the_line_and_masks_the_key(tmp_path, monkeypatch, text, expected):
    monkeypatch.setenv("IOTHUB_EMULATOR_HOME", str(tmp_path / "home"))
    with pytest.raises(SettingsProblem) as error:
        read_connection_strings(_file(tmp_path, text), resolve_device_settings)
    assert expected in str(error.value) and KEY not in str(error.value)
    assert error.value.exit_code == EXIT_SETTINGS


def test_a_missing_connection_strings_file_is_a_settings_problem(tmp_path):
    with pytest.raises(SettingsProblem, match="cannot be read"):
        read_connection_strings(tmp_path / "nope.txt", resolve_device_settings)


def test_progress_rewrites_one_line_on_a_terminal_and_prints_changes_otherwise():
    counts = [Counts(8412, 10000, 3, 12)]
    live = io.StringIO()
    Progress(lambda: counts[0], live=live, say=print, interval=5).show()
    assert live.getvalue() == "\r\x1b[Kconnected 8,412 / 10,000, failed 3, retrying 12"
    said, clock = [], Clock()
    plain = Progress(lambda: counts[0], live=None, say=said.append, interval=5, clock=clock)
    plain.quiet = 60
    plain.show()
    plain.show()  # no change: nothing said
    counts[0] = Counts(8500, 10000, 3, 12)
    plain.show()  # a change, but within the quiet time
    counts[0] = Counts(10000, 10000, 0, 0)
    plain.show()  # whole again: said at once
    counts[0] = Counts(9999, 10000, 0, 1)
    plain.show()  # no longer whole: said at once
    counts[0] = Counts(9000, 10000, 0, 1000)
    plain.show()
    clock.now += 60
    plain.show()
    assert said == ["connected 8,412 / 10,000, failed 3, retrying 12", "connected 10,000 / 10,000, failed 0, retrying 0",
                    "connected 9,999 / 10,000, failed 0, retrying 1", "connected 9,000 / 10,000, failed 0, retrying 1,000"]


def test_the_summary_names_what_the_fleet_did():
    stats = FleetStats(methods_answered=10000, desired_patches=10000, reported_patches=30000, reconnects=2)
    assert summary_line(stats, 10000) == (
        "Summary: 10,000 devices; methods answered 10,000, desired patches acknowledged 10,000, reported "
        "patches 30,000, telemetry sent 0, C2D messages 0, reconnects 2")


def test_a_fleet_needs_a_socket_per_device_within_the_open_files_limit(monkeypatch):
    from device.fleet import launch

    limits = {"now": (1024, 20000)}
    monkeypatch.setattr(launch.resource, "getrlimit", lambda which: limits["now"])
    monkeypatch.setattr(launch.resource, "setrlimit", lambda which, value: limits.update(now=value))
    assert launch.ensure_open_files(10000, 100) == 10164 and limits["now"] == (10164, 20000)
    limits["now"] = (1024, 4096)
    with pytest.raises(SettingsProblem, match="10,000 devices need about 10,164 open files.*4,096"):
        launch.ensure_open_files(10000, 100)


async def test_a_start_that_swallows_a_cancellation_is_cancelled_again():
    import asyncio

    from device.fleet.runner import cancel_until_done

    steps = []

    async def stubborn_start():
        try:
            await asyncio.Event().wait()  # e.g. DPS: wait_for returned its result despite the cancel
        except asyncio.CancelledError:
            steps.append("swallowed")
        await asyncio.Event().wait()  # carried on into the next step (connect)

    task = asyncio.create_task(stubborn_start())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_until_done([task]), 10)
    assert task.cancelled() and steps == ["swallowed"]
