"""The REST app over a real hub model with a fake clock, driven by aiohttp's test client (no TLS)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from emulator.hub import FakeClock, Hub
from emulator.hub.jobs import JobScheduler
from emulator.rest import create_app
from hubsettings import wellknown
from hubsettings.sas import build_token

from ..hub_fakes import RecordingConnections

API = "api-version=2021-04-12"
HOST = "localhost"


def token(policy: str = "iothubowner", *, resource: str = f"{HOST}:9443", key: str | None = None,
          now: float, ttl: int = 3600, with_policy: bool = True) -> str:
    key = key if key is not None else wellknown.POLICIES[policy][0]
    return build_token(resource, key, ttl=ttl, policy=policy if with_policy else None, now=now)


class Rest:
    """A test client that signs every request like the SDK does (a fresh token each time)."""

    def __init__(self, client: TestClient, clock: FakeClock):
        self.client = client
        self.clock = clock
        self.policy = "iothubowner"

    def headers(self, extra: dict[str, str] | None = None, policy: str | None = None) -> dict[str, str]:
        headers = {"Authorization": token(policy or self.policy, now=self.clock())}
        headers.update(extra or {})
        return headers

    async def call(self, verb: str, path: str, *, json: Any = None, data: Any = None,
                   headers: dict[str, str] | None = None, policy: str | None = None, api: str = API):
        separator = "&" if "?" in path else "?"
        url = f"{path}{separator}{api}" if api else path
        kwargs: dict[str, Any] = {"headers": self.headers(headers, policy)}
        if json is not None:
            kwargs["json"] = json
        if data is not None:
            kwargs["data"] = data
        return await self.client.request(verb, url, **kwargs)


@dataclass(frozen=True)
class IotHubError:
    name: str  # the iothub-errorcode header
    code: int | None  # the numeric code: only the direct-method envelope carries it
    message: str
    envelope: str  # "registry" or "method"


async def iothub_error(response) -> IotHubError:
    """An error answer, checked to be in one of IoT Hub's two envelopes and nothing more."""
    name = response.headers["iothub-errorcode"]
    body = await response.json()
    assert set(body) == {"Message", "ExceptionMessage"}, body
    if body["Message"].startswith("{"):
        inner = json.loads(body["Message"])
        assert set(inner) == {"errorCode", "trackingId", "message", "info", "timestampUtc"}, inner
        assert body["ExceptionMessage"] == "" and isinstance(inner["errorCode"], int)
        assert inner["errorCode"] // 1000 == response.status
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", inner["timestampUtc"])
        return IotHubError(name, inner["errorCode"], inner["message"], "method")
    match = re.fullmatch(r"ErrorCode:([A-Za-z]+);(.*)", body["Message"], re.DOTALL)
    assert match and match.group(1) == name, body
    assert re.fullmatch(r"Tracking ID:[0-9a-f]{32}-G:0-TimeStamp:\d\d/\d\d/\d{4} \d\d:\d\d:\d\d",
                        body["ExceptionMessage"]), body
    return IotHubError(name, None, match.group(2), "registry")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def connections() -> RecordingConnections:
    return RecordingConnections()


@pytest.fixture
def hub(clock, connections) -> Hub:
    hub = Hub(HOST, clock=clock)
    hub.register_well_known()
    hub.attach_connections(connections)
    return hub


@pytest.fixture
def scheduler(hub) -> JobScheduler:
    return hub.jobs  # the hub builds its scheduler (and restores saved jobs); tests drive it with tick()


@pytest.fixture
async def rest(hub, scheduler, clock):
    client = TestClient(TestServer(create_app(hub, scheduler)))
    await client.start_server()
    try:
        yield Rest(client, clock)
    finally:
        await scheduler.aclose()
        await client.close()
