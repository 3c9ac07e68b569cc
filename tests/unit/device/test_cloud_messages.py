"""The listener prints each cloud-to-device message: body, application and system properties."""

import asyncio
import io
import json

from azure.iot.device import Message

from device.app import DeviceAgent, RunOptions
from device.cloud_messages import body_text, describe, describe_parts, from_topic
from device.eventlog import EventLog
from device.methods import MethodConfig

from .fakes import FakeDeviceClient, FakeFactory, FakeTime
from .test_app import WAIT, cs_settings


def received(data: bytes, **fields) -> Message:
    message = Message(data, message_id=fields.pop("message_id", "m1"), content_type=fields.pop("content_type", None))
    for name, value in fields.items():
        setattr(message, name, value)
    return message


def test_line_shows_body_properties_and_system_properties():
    message = received(b'{"valve":"open"}', content_type="application/json", correlation_id="c-9")
    message.custom_properties = {"zone": "3", "a b": "x&y"}
    line, data = describe(message)
    assert line == ('message m1 from the cloud: "{\\"valve\\":\\"open\\"}" {"a b":"x&y","zone":"3"} '
                    '(correlationId c-9, contentType application/json)')
    assert data["body"] == '{"valve":"open"}'
    assert data["properties"] == {"zone": "3", "a b": "x&y"}
    assert data["systemProperties"] == {"messageId": "m1", "correlationId": "c-9", "contentType": "application/json"}


def test_binary_and_long_bodies_stay_one_readable_line():
    assert body_text(b"\xff\x00\x01") == "<3 bytes: ff0001>"
    line, data = describe(received(b"x" * 500))
    assert line.endswith('…"') and len(line) < 300
    assert data["body"] == "x" * 500


async def test_agent_prints_messages_the_sdk_hands_it_as_json_lines():
    client = FakeDeviceClient()
    out, clock = io.StringIO(), FakeTime()
    agent = DeviceAgent(cs_settings(), RunOptions(methods=MethodConfig(), telemetry=False), FakeFactory(client),
                        EventLog(out, json_lines=True, now=clock.utc), sleep=clock.sleep, clock=clock.clock,
                        now=clock.utc)
    await asyncio.wait_for(agent.start(), WAIT)
    assert client.on_message_received is not None  # the SDK subscribes to devicebound only when set
    message = received(b"hello")
    message.custom_properties = {"k": "v"}
    client.on_message_received(message)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    printed = [r for r in records if r.get("message", "").startswith("message m1")]
    assert printed and printed[0]["body"] == "hello" and printed[0]["properties"] == {"k": "v"}
    await agent.stop()


def test_an_mqtt_property_bag_reads_as_the_sdk_would():
    topic = ("devices/d1/messages/devicebound/%24.mid=m1&%24.cid=c%2F1"
             "&%24.to=%2Fdevices%2Fd1%2Fmessages%2Fdevicebound&%24.ct=application%2Fjson&iothub-ack=full"
             "&a%26b=x%3Dy&plain=v")
    application, system = from_topic(topic)
    assert application == {"a&b": "x=y", "plain": "v"}
    assert system == {"messageId": "m1", "correlationId": "c/1", "contentType": "application/json", "ack": "full"}
    line, _ = describe_parts(b"hi", application, system)
    assert line == ('message m1 from the cloud: "hi" {"a&b":"x=y","plain":"v"} '
                    '(correlationId c/1, contentType application/json)')
    assert from_topic("devices/d1/messages/devicebound/") == ({}, {})
