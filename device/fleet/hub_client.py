"""A device's IoT Hub connection on the fleet engine: the surface of azure-iot-device's
IoTHubDeviceClient that the listener uses (device.sdk.DeviceClient), over IoT Hub's documented MQTT.

So the fleet's devices run the very same DeviceAgent (device/app.py) as the one-device listener.
Like the SDK it connects with clean_session=0 and a SAS token, subscribes to methods, desired
patches, twin answers and C2D, renews the token before it expires (DISCONNECT + CONNECT), reconnects
by itself with backoff after a loss, raises the SDK's exception types, and stops for good when the hub
refuses its credentials on a reconnect (reported through on_background_exception, as the SDK does).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from azure.iot.device import Message, MethodRequest
from azure.iot.device import exceptions as sdk_errors

from mqttcodec import (
    CONNACK_BAD_CREDENTIALS,
    CONNACK_NOT_AUTHORIZED,
    CONNACK_SERVER_UNAVAILABLE,
    Connect,
    Publish,
)
from hubsettings import build_token, parse_connection_string
from hubsettings.connection_string import split_host_port

from ..sdk import HubIdentity
from . import topics
from .link import FleetLink
from .mqtt import ConnectionClosed, MqttConnection, open_connection
from .pacing import THROTTLED_SECONDS

log = logging.getLogger("device.fleet")


class ServerUnavailable(sdk_errors.ConnectionFailedError):
    """CONNACK 3: IoT Hub's answer when it throttles connections (or cannot serve them now)."""


def refusal_error(return_code: int, target: str) -> Exception:
    """CONNACK refusals as the SDK raises them: bad credentials or not authorised -> CredentialError,
    anything else -> ConnectionFailedError (3, server unavailable or throttling: ServerUnavailable)."""
    if return_code in (CONNACK_BAD_CREDENTIALS, CONNACK_NOT_AUTHORIZED):
        return sdk_errors.CredentialError(f"{target} refused the credentials (CONNACK {return_code})")
    if return_code == CONNACK_SERVER_UNAVAILABLE:
        return ServerUnavailable(f"{target} is unavailable or throttling (CONNACK 3)")
    return sdk_errors.ConnectionFailedError(f"{target} refused the connection (CONNACK {return_code})")


async def dial(link: FleetLink, host: str, address: str, port: int, connect: Connect, *,
               on_publish: Callable[[MqttConnection, Publish], None],
               on_lost: Callable[[MqttConnection], None] | None, subscriptions: tuple[str, ...],
               ssl_context: Any, target: str) -> MqttConnection:
    """TCP + TLS + CONNECT + SUBSCRIBE within link.handshake_timeout; SDK exception types on failure."""
    connection: MqttConnection | None = None

    async def attempt() -> MqttConnection:
        nonlocal connection
        connection = await open_connection(address, port, ssl_context=ssl_context, server_hostname=host,
                                           on_publish=on_publish, on_lost=on_lost,
                                           timeout=link.handshake_timeout)
        code = await connection.handshake(connect)
        if code:
            if code == CONNACK_SERVER_UNAVAILABLE:
                link.stats.throttled += 1
            raise refusal_error(code, target)
        await connection.subscribe(subscriptions)
        return connection

    try:
        return await asyncio.wait_for(attempt(), link.handshake_timeout)
    except sdk_errors.ClientError:
        _close(connection)
        raise
    except (OSError, TimeoutError, ConnectionClosed) as e:
        _close(connection)
        reason = f"no answer within {link.handshake_timeout:g} s" if isinstance(e, TimeoutError) else str(e)
        raise sdk_errors.ConnectionFailedError(f"{target}: {reason or type(e).__name__}") from e
    except BaseException:
        _close(connection)
        raise


def _close(connection: MqttConnection | None) -> None:
    if connection is not None:
        connection.on_lost = None
        connection.close()


class HubClient:
    """One device's connection to its hub (see the module docstring)."""

    handler_setters_block = False  # handlers are plain attributes; subscribing happens in connect()

    def __init__(self, identity: HubIdentity, ca_pem: str | None, link: FleetLink):
        host_name, key, gateway = identity.host_name, identity.symmetric_key, None
        if identity.connection_string:
            cs = parse_connection_string(identity.connection_string, expect="device")
            host_name, key, gateway = cs.host_name, cs.shared_access_key, cs.gateway_host_name
        if not key:
            raise sdk_errors.CredentialError("no shared access key (X.509 devices are not simulated)")
        self.device_id = identity.device_id
        self._host_name = host_name
        self._host, port = split_host_port(host_name)
        self._address = split_host_port(gateway)[0] if gateway else self._host
        self._port = port or link.port
        self._key = key
        self._link = link
        self._ssl = link.ssl_context(ca_pem)
        self._connection: MqttConnection | None = None
        self._online = asyncio.Event()  # set while connected, and once shut down (waiters then give up)
        self._twin_waiters: dict[str, asyncio.Future[tuple[int, bytes]]] = {}
        self._next_rid = 0
        self._closing = False
        self._refused = False
        self._renewal: asyncio.TimerHandle | None = None
        self._reconnect_task: asyncio.Task | None = None
        self.connected = False
        self.on_method_request_received: Callable[[MethodRequest], None] | None = None
        self.on_twin_desired_properties_patch_received: Callable[[dict], None] | None = None
        self.on_message_received: Callable[[Message], None] | None = None
        self.on_connection_state_change: Callable[[], None] | None = None
        self.on_background_exception: Callable[[BaseException], None] | None = None

    # --- life cycle -------------------------------------------------------------------------------

    async def connect(self) -> None:
        """One attempt (the caller retries): raises CredentialError, ConnectionFailedError."""
        if self._closing:
            raise sdk_errors.OperationCancelled("the client was shut down")
        if self._connection is None:
            await self._connect_once()

    async def shutdown(self) -> None:
        self._closing = True
        if self._renewal is not None:
            self._renewal.cancel()
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.on_lost = None
            connection.disconnect()
            self._went_offline()
        self._online.set()  # wake waiters: they see _closing and give up
        self._fail_twin_waiters(sdk_errors.OperationCancelled("the client was shut down"))

    async def _connect_once(self) -> None:
        token = build_token(f"{self._host_name}/devices/{self.device_id}", self._key, ttl=self._link.token_ttl)
        connect = Connect(self.device_id, username=topics.hub_username(self._host_name, self.device_id),
                          password=token.encode(), keepalive=self._link.keepalive, clean_session=False)
        async with self._link.hub_gate.slot():
            if self._closing:
                raise sdk_errors.OperationCancelled("the client was shut down")
            connection = await dial(self._link, self._host, self._address, self._port, connect,
                                    on_publish=self._on_publish, on_lost=self._on_lost,
                                    subscriptions=topics.device_subscriptions(self.device_id),
                                    ssl_context=self._ssl, target=f"IoT hub {self._host_name}")
        if self._closing:
            _close(connection)
            raise sdk_errors.OperationCancelled("the client was shut down")
        self._connection = connection
        self.connected = True
        self._link.stats.connected += 1
        self._online.set()
        loop = asyncio.get_running_loop()
        self._renewal = loop.call_later(max(1.0, self._link.token_ttl - self._link.renew_before), self._renew)

    def _went_offline(self) -> None:
        if self.connected:
            self.connected = False
            self._link.stats.connected -= 1
        if not self._closing:
            self._online.clear()

    def _on_lost(self, connection: MqttConnection) -> None:
        if connection is not self._connection:
            return
        self._connection = None
        if self._renewal is not None:
            self._renewal.cancel()
        self._went_offline()
        self._fail_twin_waiters(ConnectionClosed("connection lost"))
        if self._closing:
            return
        self._notify_state()
        self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect(quiet=False))

    def _renew(self) -> None:
        """The token is about to expire: DISCONNECT and CONNECT with a new one, as the SDK does."""
        connection = self._connection
        if connection is None or self._closing:
            return
        self._connection = None
        connection.on_lost = None  # this loss is ours: nothing to announce
        connection.disconnect()
        self._went_offline()
        self._fail_twin_waiters(ConnectionClosed("reconnecting with a new token"))
        self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect(quiet=True))

    async def _reconnect(self, quiet: bool) -> None:
        """Until connected, refused or shut down; the first try of a token renewal is immediate and
        unannounced, every other waits a backoff delay with jitter."""
        stats = self._link.stats
        stats.reconnecting += 1
        attempt = 0
        try:
            while not self._closing:
                if not (quiet and attempt == 0):
                    await asyncio.sleep(self._link.retry.delay(attempt + 1, self._link.rng))
                attempt += 1
                try:
                    await self._connect_once()
                except sdk_errors.CredentialError as e:
                    self._refused = True
                    self._online.set()
                    self._report_background(e)
                    return
                except sdk_errors.ConnectionFailedError as e:
                    if quiet and attempt == 1:  # the renewal's reconnect failed: now it is a loss
                        self._notify_state()
                    if isinstance(e, ServerUnavailable):
                        await asyncio.sleep(THROTTLED_SECONDS * (0.5 + self._link.rng.random()))
                    continue
                except sdk_errors.OperationCancelled:
                    return
                if not (quiet and attempt == 1):
                    stats.reconnects += 1
                    self._notify_state()
                return
        finally:
            stats.reconnecting -= 1

    def _notify_state(self) -> None:
        self._call(self.on_connection_state_change)

    def _report_background(self, error: BaseException) -> None:
        self._call(self.on_background_exception, error)

    def _call(self, handler: Callable[..., None] | None, *args: Any) -> None:
        if handler is None:
            return
        try:
            handler(*args)
        except Exception:  # noqa: BLE001 - a handler's bug must not take the connection down
            log.exception("handler failed on %s", self.device_id)

    # --- inbound ----------------------------------------------------------------------------------

    def _on_publish(self, connection: MqttConnection, packet: Publish) -> None:
        topic = packet.topic
        if topic.startswith(topics.TWIN_RESPONSES):
            waiter = self._twin_waiters.get(topics.rid_of(topic) or "")
            status = topics.status_of(topic, topics.TWIN_RESPONSES)
            if waiter is not None and not waiter.done() and status is not None:
                waiter.set_result((status, bytes(packet.payload)))
        elif topic.startswith(topics.METHOD_REQUESTS):
            rid = topics.rid_of(topic)
            if rid is not None:
                request = MethodRequest(request_id=rid, name=topics.method_name_of(topic),
                                        payload=_json_or_text(packet.payload))
                self._call(self.on_method_request_received, request)
        elif topic.startswith(topics.DESIRED_PATCHES):
            patch = _json_or_text(packet.payload)
            if isinstance(patch, dict):
                self._link.stats.desired_patches += 1
                self._call(self.on_twin_desired_properties_patch_received, patch)
        elif topic.startswith(f"devices/{self.device_id}/messages/devicebound"):
            self._link.stats.c2d_received += 1
            if self.on_message_received is not None:
                self._call(self.on_message_received, _c2d_message(topic, packet.payload))

    def _fail_twin_waiters(self, error: BaseException) -> None:
        for waiter in self._twin_waiters.values():
            if not waiter.done():
                waiter.set_exception(error)
                waiter.exception()  # retrieved by the request loop, or by nobody after a shutdown

    # --- operations: wait for the connection, retry on a loss (the caller bounds them in time) ----

    async def _online_connection(self) -> MqttConnection:
        while True:
            if self._closing:
                raise sdk_errors.OperationCancelled("the client was shut down")
            if self._refused:
                raise sdk_errors.NoConnectionError("the hub refused this device's credentials")
            if self._connection is not None:
                return self._connection
            await self._online.wait()

    async def _publish(self, topic: str, payload: bytes) -> None:
        """Publish QoS 1 until the hub acknowledges it (resent on the next connection after a loss)."""
        while True:
            connection = await self._online_connection()
            try:
                await connection.publish(topic, payload, qos=1)  # type: ignore[misc]
                return
            except ConnectionClosed:
                continue

    async def _twin(self, topic_for: Callable[[str], str], payload: bytes) -> tuple[int, bytes]:
        while True:
            connection = await self._online_connection()
            self._next_rid += 1
            rid = str(self._next_rid)
            waiter: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
            self._twin_waiters[rid] = waiter
            try:
                connection.publish(topic_for(rid), payload, qos=1)
                status, body = await waiter
            except ConnectionClosed:
                continue
            finally:
                self._twin_waiters.pop(rid, None)
            if status == 429:
                self._link.stats.throttled += 1
                await asyncio.sleep(THROTTLED_SECONDS * (0.5 + self._link.rng.random()))
                continue
            return status, body

    async def get_twin(self) -> dict:
        status, body = await self._twin(topics.twin_get, b"")
        if status >= 300:
            raise sdk_errors.ServiceError(f"twin GET answered {status}: {body[:200].decode('utf-8', 'replace')}")
        twin = json.loads(body)
        if not isinstance(twin, dict):
            raise sdk_errors.ServiceError("twin GET answered something other than a JSON object")
        return twin

    async def patch_twin_reported_properties(self, reported_properties_patch: dict) -> None:
        body = json.dumps(reported_properties_patch).encode()
        status, answer = await self._twin(topics.reported_patch, body)
        if status >= 300:
            raise sdk_errors.ServiceError(
                f"reported patch answered {status}: {answer[:200].decode('utf-8', 'replace')}")
        self._link.stats.reported_patches += 1

    async def send_method_response(self, method_response: Any) -> None:
        payload = json.dumps(method_response.payload).encode()
        await self._publish(topics.method_response(method_response.status, method_response.request_id), payload)
        self._link.stats.methods_answered += 1

    async def send_message(self, message: Message) -> None:
        properties = dict(message.custom_properties or {})
        for name, value in (("$.mid", message.message_id), ("$.ct", message.content_type),
                            ("$.ce", message.content_encoding)):
            if value:
                properties[name] = str(value)
        data = message.data if isinstance(message.data, bytes) else str(message.data).encode()
        await self._publish(topics.telemetry(self.device_id, properties), data)
        self._link.stats.telemetry_sent += 1


def _json_or_text(payload: bytes | memoryview) -> Any:
    """A method payload or a patch as the SDK hands it over: JSON, None when empty; text otherwise."""
    raw = bytes(payload)
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _c2d_message(topic: str, payload: bytes | memoryview) -> Message:
    properties = topics.query_of("?" + topic.split("/devicebound/", 1)[-1])
    message = Message(bytes(payload), message_id=properties.pop("$.mid", None),
                      content_type=properties.pop("$.ct", None), content_encoding=properties.pop("$.ce", None))
    message.custom_properties = {k: v for k, v in properties.items() if not k.startswith("$.")}
    return message

