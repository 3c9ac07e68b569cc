"""What the reliability tests share: a raw MQTT device built on our codec (asyncio, TLS, dense enough
for a thousand devices in one process), a signed REST caller, and a watch on the emulator's log.

The raw device speaks exactly what the SDK puts on the wire (iothub-wire-facts.md) and nothing else,
so a test can also send what the SDK never would: another device's topics, garbage, oversized packets.
Like a real device it subscribes to what it wants delivered (the hub delivers by subscription):
`RawDevice.connected()` subscribes to methods and desired patches unless told otherwise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

from emulator.rest.app import ROUTES
from mqttcodec import Connack, Connect, PacketReader, Puback, Publish, Suback, Subscribe, encode
from hubsettings import build_token, wellknown

WAIT = 30.0  # generous bound on a loaded 2-core machine; never reached when things work
API = "api-version=2021-04-12"
#: What the device SDK subscribes to once a method handler and a desired-patch handler are set.
SDK_SUBSCRIPTIONS = ("$iothub/methods/POST/#", "$iothub/twin/PATCH/properties/desired/#")


def device_token(host: str, device_id: str, key: str, *, ttl: int = 3600, now: float | None = None) -> str:
    return build_token(f"{host}/devices/{device_id}", key, ttl=ttl, now=now)


def service_token(host: str, rest_port: int, policy: str = wellknown.OWNER_POLICY, *, key: str | None = None,
                  ttl: int = 3600, now: float | None = None) -> str:
    key = key if key is not None else wellknown.POLICIES[policy][0]
    return build_token(f"{host}:{rest_port}", key, ttl=ttl, policy=policy, now=now)


def device_connect(host: str, device_id: str, password: str, *, client_id: str | None = None,
                   keepalive: int = 60, clean_session: bool = False) -> Connect:
    return Connect(client_id or device_id, f"{host}/{device_id}/?api-version=2019-10-01", password.encode(),
                   keepalive=keepalive, clean_session=clean_session)


@dataclass
class RawDevice:
    """One MQTT/TLS connection. `packets` collects what the hub sends; QoS 1 publishes are PUBACKed unless
    `auto_puback` is off (a device that dies before acknowledging)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    packets: list[Any] = field(default_factory=list)
    auto_puback: bool = True
    closed: bool = False
    _decoder: PacketReader = field(default_factory=lambda: PacketReader(1024 * 1024))
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _next_id: int = 0
    _pump: asyncio.Task | None = None

    @classmethod
    async def open(cls, address: str, ca_pem: str, server_hostname: str, port: int = wellknown.MQTT_PORT) -> RawDevice:
        context = ssl.create_default_context(cadata=ca_pem)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port, ssl=context, server_hostname=server_hostname), WAIT)
        device = cls(reader, writer)
        device._pump = asyncio.create_task(device._read_loop())
        return device

    @classmethod
    async def connected(cls, emulator: Any, device_id: str, key: str, *,
                        subscribe: tuple[str, ...] = SDK_SUBSCRIPTIONS, auto_puback: bool = True,
                        **connect_options: Any) -> RawDevice:
        """Open, CONNECT with a token signed by `key`, wait for CONNACK 0, then subscribe to `subscribe`
        (methods and desired patches, as a device with both handlers set) and wait for the SUBACK."""
        device = await cls.open(emulator.address, emulator.ca_pem, emulator.host_name)
        device.auto_puback = auto_puback
        token = device_token(emulator.host_name, device_id, key)
        return_code = await device.connect(device_connect(emulator.host_name, device_id, token, **connect_options))
        assert return_code == 0, f"{device_id}: CONNACK {return_code}"
        if subscribe:
            codes = await device.subscribed(*subscribe)
            assert codes == (1,) * len(subscribe), f"{device_id}: SUBACK {codes}"
        return device

    async def _read_loop(self) -> None:
        try:
            while data := await self.reader.read(65536):
                for packet in self._decoder.feed(data):
                    if isinstance(packet, Publish) and packet.qos == 1 and self.auto_puback:
                        self.writer.write(encode(Puback(packet.packet_id)))
                    self.packets.append(packet)
                self._arrived.set()
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            self.closed = True
            self._arrived.set()

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    def send(self, packet: Any) -> None:
        self.writer.write(encode(packet))

    def packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    async def connect(self, connect: Connect) -> int:
        self.send(connect)
        connack = await self.expect(lambda p: isinstance(p, Connack))
        return connack.return_code if connack else -1

    def publish(self, topic: str, payload: bytes = b"", qos: int = 1) -> None:
        self.send(Publish(topic, payload, qos, self.packet_id() if qos else None))

    def subscribe(self, *topic_filters: str) -> None:
        self.send(Subscribe(self.packet_id(), tuple((t, 1) for t in topic_filters)))

    async def subscribed(self, *topic_filters: str) -> tuple[int, ...]:
        """SUBSCRIBE and wait for the SUBACK: its return codes (0x80 for a refused filter)."""
        packet_id = self.packet_id()
        self.send(Subscribe(packet_id, tuple((t, 1) for t in topic_filters)))
        suback = await self.expect(lambda p: isinstance(p, Suback) and p.packet_id == packet_id)
        assert suback is not None, "the connection closed before the SUBACK"
        return suback.return_codes

    def twin_get(self) -> str:
        rid = uuid.uuid4().hex
        self.publish(f"$iothub/twin/GET/?$rid={rid}", b" ")
        return rid

    def report(self, patch: Any) -> str:
        rid = uuid.uuid4().hex
        self.publish(f"$iothub/twin/PATCH/properties/reported/?$rid={rid}", json.dumps(patch).encode())
        return rid

    async def expect(self, predicate, timeout: float = WAIT) -> Any:
        """The first packet received (so far or later) matching predicate, removed from `packets`;
        None when the connection closes first."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for index, packet in enumerate(self.packets):
                if predicate(packet):
                    return self.packets.pop(index)
            if self.closed:
                return None
            self._arrived.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError("expected packet did not arrive")
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def acknowledged(self, packet_id: int, timeout: float = WAIT) -> bool:
        """Wait for the PUBACK of `packet_id`; False when the connection closes first."""
        return await self.expect(lambda p: isinstance(p, Puback) and p.packet_id == packet_id, timeout) is not None

    async def expect_reply(self, rid: str, timeout: float = WAIT) -> Publish | None:
        return await self.expect(lambda p: isinstance(p, Publish) and rid_of(p.topic) == rid, timeout)

    async def wait_closed(self, timeout: float = WAIT) -> bool:
        await asyncio.wait_for(self._pump, timeout)
        return self.closed

    def kill(self) -> None:
        """Die as a killed process does: the socket goes, with no MQTT DISCONNECT and no TLS goodbye."""
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (asyncio.TimeoutError, ConnectionError, ssl.SSLError, OSError):
            pass
        if self._pump:
            self._pump.cancel()


def rid_of(topic: str) -> str | None:
    """The `$rid` of a request or answer topic, exactly (`$rid=1` is not `$rid=12`)."""
    query = topic.partition("?")[2]
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "$rid":
            return value
    return None


def reply_status(packet: Publish) -> int:
    """`$iothub/twin/res/{status}/?$rid=..` -> status."""
    return int(packet.topic.split("/")[3])


def service_routes() -> list[tuple[str, str, tuple[str, ...]]]:
    """(verb, path template, rights any one of which grants it) of every service route, read from the REST
    front's routing table, so a route added there is covered by every test that walks them."""
    return [(verb, path, tuple(rights)) for verb, path, _, rights in ROUTES]


def concrete_path(template: str, device_id: str, job_id: str) -> str:
    """A route's path template with its placeholders filled: job routes take the job id, others the device's."""
    value = job_id if template.startswith("/jobs") else device_id
    return template.replace("{deviceId}", device_id).replace("{id}", value)


def route_bodies(device_id: str, job_id: str) -> dict[tuple[str, str], Any]:
    """A valid body for each route that takes one, keyed by verb and path template. A route added to the
    routing table without a body here is still walked (and still refused before its body is read)."""
    desired = {"properties": {"desired": {"hacked": True}}}
    return {
        ("PUT", "/devices/{id}"): {"deviceId": device_id},
        ("POST", "/devices/query"): {"query": "SELECT * FROM devices"},
        ("PATCH", "/twins/{id}"): desired,
        ("PUT", "/twins/{id}"): desired,
        ("POST", "/twins/{deviceId}/methods"): {"methodName": "reboot", "payload": {}, "responseTimeoutInSeconds": 5},
        ("PUT", "/jobs/v2/{id}"): {"jobId": job_id, "type": "scheduleUpdateTwin", "queryCondition": "*",
                                   "updateTwin": {**desired, "etag": "*"}, "startTime": "2020-01-01T00:00:00Z",
                                   "maxExecutionTimeInSeconds": 60},
    }


class Rest:
    """Signed HTTPS calls to the emulator's REST front, as the SDK makes them (new token per call)."""

    def __init__(self, host: str, address: str, rest_port: int, ca_file: str):
        self.host, self.address, self.port, self.ca_file = host, address, rest_port, ca_file
        self.session = requests.Session()
        self.session.verify = ca_file

    @property
    def base(self) -> str:
        return f"https://{self.host}:{self.port}"

    def call(self, verb: str, path: str, *, json_body: Any = None, data: bytes | str | None = None,
             policy: str = wellknown.OWNER_POLICY, authorization: str | None = None, api: str | None = API,
             headers: dict[str, str] | None = None, timeout: float = WAIT) -> requests.Response:
        url = self.base + path + ((("&" if "?" in path else "?") + api) if api else "")
        all_headers = {"Authorization": authorization if authorization is not None
                       else service_token(self.host, self.port, policy)}
        all_headers.update(headers or {})
        if json_body is not None:
            data = json.dumps(json_body)
            all_headers.setdefault("Content-Type", "application/json")
        return self.session.request(verb, url, data=data, headers=all_headers, timeout=timeout)


class LogWatch(logging.Handler):
    """Collects emulator log records that carry a traceback (exc_info) or are errors."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.problems: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.problems.append(record)

    def describe(self) -> str:
        return "\n".join(self.format(record) for record in self.problems)
