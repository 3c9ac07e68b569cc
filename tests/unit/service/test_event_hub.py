"""The monitor command's pieces without a hub: Event Hubs connection strings (a port moves to the
custom endpoint), start positions, the redirect's info, output lines and error translation."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import pytest

from service.commands.monitor import as_json, as_line
from service.errors import BadInput, ExitCode, NotFound, Unauthorized
from service.event_hub import (SOCKET_TIMEOUT_S, EventHubEndpoint, Monitor, Telemetry, _from_redirect,
                               starting_position, translate)

CS = "Endpoint=sb://localhost/;SharedAccessKeyName=service;SharedAccessKey=K2V5;EntityPath=localhost"


def test_a_connection_string_on_5671_is_used_as_is():
    endpoint = EventHubEndpoint.parse(CS)
    assert endpoint == EventHubEndpoint(CS) and endpoint.entity_path == "localhost"


def test_another_port_becomes_the_custom_endpoint_address():
    endpoint = EventHubEndpoint.parse(CS.replace("sb://localhost/", "sb://localhost:15671/"))
    assert endpoint.custom_endpoint_address == "sb://localhost:15671"
    assert endpoint.connection_string.startswith("Endpoint=sb://localhost/;")


@pytest.mark.parametrize("text", ["HostName=x;SharedAccessKeyName=a;SharedAccessKey=b",
                                  "Endpoint=sb://h/;SharedAccessKeyName=a;SharedAccessKey=b",
                                  "Endpoint=https://h/;SharedAccessKeyName=a;SharedAccessKey=b;EntityPath=e"])
def test_a_malformed_connection_string_is_bad_input(text):
    with pytest.raises(BadInput, match="Endpoint=sb://HOST/"):
        EventHubEndpoint.parse(text)


def test_start_positions():
    assert starting_position("earliest") == ("-1", False)
    assert starting_position("latest") == ("@latest", False)
    moment, inclusive = starting_position("2024-05-01T12:00:00Z")
    assert moment == dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc) and inclusive
    assert starting_position("2024-05-01T12:00:00")[0].tzinfo == dt.timezone.utc  # no zone: UTC
    with pytest.raises(BadInput, match="--start takes earliest, latest or an ISO 8601 time"):
        starting_position("yesterday")


def test_the_redirect_gives_the_endpoint_and_entity_path():
    redirect = SimpleNamespace(info={b"hostname": b"ihsu-prod.servicebus.windows.net", b"port": 5671,
                                     b"address": b"amqps://ihsu-prod.servicebus.windows.net:5671/myhub/$management"})
    endpoint = _from_redirect(redirect, "service", "K2V5")
    assert endpoint.connection_string == ("Endpoint=sb://ihsu-prod.servicebus.windows.net/;SharedAccessKeyName=service;"
                                          "SharedAccessKey=K2V5;EntityPath=myhub")
    local = _from_redirect(SimpleNamespace(info={b"hostname": b"127.0.0.9", b"port": 15671,
                                                 b"address": b"amqps://127.0.0.9:15671/127.0.0.9/$management"}), "s", "k")
    assert local.custom_endpoint_address == "sb://127.0.0.9:15671" and local.entity_path == "127.0.0.9"


def telemetry(body: bytes) -> Telemetry:
    return Telemetry("dev-1", dt.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=dt.timezone.utc), "2", 7, "1024",
                     body, {"alert": "true"}, {"message-id": "m-1", "content-type": "application/json",
                                               "iothub-message-source": "Telemetry", "x-opt-offset": "1024"})


def test_lines_and_json_lines():
    message = telemetry(b'{"t": 21}')
    assert as_line(message, False) == '2024-05-01T12:00:00.250+00:00 dev-1 {"t":21}'
    with_properties = as_line(message, True)
    assert 'properties={"alert": "true"}' in with_properties and '"message-id": "m-1"' in with_properties
    record = as_json(message, True)
    assert record["body"] == {"t": 21} and record["partition"] == "2" and record["sequenceNumber"] == 7
    assert record["properties"] == {"alert": "true"} and record["systemProperties"]["message-id"] == "m-1"
    assert "properties" not in as_json(message, False)
    assert json.dumps(as_json(telemetry(b"\xff\x00"), False))  # binary bodies stay printable
    assert as_json(telemetry(b"\xff\x00"), False)["body"] == {"base64": "/wA="}
    assert as_line(telemetry(b"plain"), False).endswith(" dev-1 plain")


def test_errors_become_one_of_ours():
    from azure.eventhub import exceptions
    endpoint = EventHubEndpoint.parse(CS)
    unauthorized = translate(exceptions.AuthenticationError("CBS Token authentication failed. Status code: 401"),
                             endpoint, "$Default", None)
    assert isinstance(unauthorized, Unauthorized) and unauthorized.exit_code == ExitCode.UNAUTHORIZED
    missing = translate(exceptions.EventHubError("amqp:not-found: the consumer group 'x' does not exist"),
                        endpoint, "x", None)
    assert isinstance(missing, NotFound)
    assert "\n" not in translate(exceptions.EventHubError("first line\nsecond"), endpoint, "$Default", None).message


def test_monitor_waits_briefly_on_each_quiet_partition():
    # azure-eventhub's sync consumer blocks for its socket timeout on every quiet partition it visits;
    # its default (0.2 s) made monitor fall seconds behind a device sending 20 messages a second.
    client = Monitor(EventHubEndpoint.parse(CS), ca_file=None).client()
    try:
        assert client._config.socket_timeout == SOCKET_TIMEOUT_S < 0.2
    finally:
        client.close()
