"""What the REST front logs: every request at DEBUG, every refusal at INFO with the likely fix, and
never a key or a signature."""

from __future__ import annotations

import logging
import urllib.parse

import pytest

from hubsettings import wellknown

from .conftest import API, token

LOGGER = "emulator.rest"


def _records(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


def _assert_no_secrets(caplog) -> None:
    text = caplog.text
    for key, _rights in wellknown.POLICIES.values():
        assert key not in text and urllib.parse.quote(key, safe="") not in text
    assert "sig=" not in text and "SharedAccessSignature sr=" not in text


async def test_every_request_is_logged_at_debug_with_status_code_and_time(rest, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    await rest.call("GET", "/devices/myDeviceId")
    await rest.call("GET", "/devices/nobody")
    lines = _records(caplog, logging.DEBUG)
    assert any(line.startswith("GET /devices/myDeviceId?api-version=2021-04-12 200 - ") and line.endswith(" ms")
               for line in lines), lines
    assert any(line.startswith("GET /devices/nobody?api-version=2021-04-12 404 DeviceNotFound ")
               for line in lines), lines
    [refusal] = _records(caplog, logging.INFO)
    assert refusal.startswith("GET /devices/nobody?api-version=2021-04-12 -> 404 DeviceNotFound: ")
    assert refusal.endswith("(create the device first, or check the device id)")
    _assert_no_secrets(caplog)


async def _refusal(rest, caplog, verb: str, path: str, **kwargs) -> str:
    caplog.clear()
    caplog.set_level(logging.INFO, logger=LOGGER)
    response = await rest.call(verb, path, **kwargs)
    assert response.status >= 400
    lines = _records(caplog, logging.INFO)
    assert len(lines) == 1, lines
    _assert_no_secrets(caplog)
    return lines[0]


async def test_401_says_which_host_the_token_names(rest, caplog, clock):
    other = token(resource="otherhub.azure-devices.net", now=clock())
    line = await _refusal(rest, caplog, "GET", "/devices", headers={"Authorization": other})
    assert "401 IotHubUnauthorizedAccess" in line
    assert "the SAS token's sr names host 'otherhub.azure-devices.net' but the hub is 'localhost'" in line


async def test_401_says_which_right_the_policy_lacks(rest, caplog):
    line = await _refusal(rest, caplog, "POST", "/twins/myDeviceId/methods", json={"methodName": "m"},
                          policy="registryRead")
    assert "policy registryRead lacks ServiceConnect" in line


async def test_401_says_the_token_expired(rest, caplog, clock):
    expired = token(now=clock() - 7200)
    line = await _refusal(rest, caplog, "GET", "/devices", headers={"Authorization": expired})
    assert "the token expired at" in line and "3600 s ago" in line


async def test_401_says_the_key_is_wrong(rest, caplog, clock):
    wrong = token(key=wellknown.POLICIES["service"][0], now=clock())
    line = await _refusal(rest, caplog, "GET", "/devices", headers={"Authorization": wrong})
    assert "does not match policy iothubowner's key" in line


async def test_401_without_header_or_with_a_device_token(rest, caplog, clock):
    assert "send Authorization: SharedAccessSignature" in await _refusal(
        rest, caplog, "GET", "/devices", headers={"Authorization": ""})
    device_token = token(with_policy=False, now=clock())
    assert "a device token cannot call the service API" in await _refusal(
        rest, caplog, "GET", "/devices", headers={"Authorization": device_token})


async def test_unknown_route_names_the_route_and_api_version(rest, caplog):
    line = await _refusal(rest, caplog, "GET", "/configurations/nope/extra")
    assert line.startswith("GET /configurations/nope/extra?api-version=2021-04-12 -> 404 NotFound")
    assert "no such route" in line


async def test_bad_request_says_what_was_wrong(rest, caplog):
    line = await _refusal(rest, caplog, "PUT", "/twins/myDeviceId", data=b"{nope",
                          headers={"Content-Type": "application/json"})
    assert "400 ArgumentInvalid: The request body is not valid JSON" in line


async def test_bad_api_version_says_which_are_served(rest, caplog):
    line = await _refusal(rest, caplog, "GET", "/devices", api="api-version=2016-11-14")
    assert "400 InvalidProtocolVersion" in line and "2021-04-12" in line


@pytest.mark.parametrize("api", [API, ""])
async def test_query_strings_other_than_the_api_version_are_not_logged(rest, caplog, api):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    await rest.call("GET", "/devices?top=5&secret=zzz", api=api)
    assert "zzz" not in caplog.text
