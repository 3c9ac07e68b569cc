"""DPS registration over MQTT on the fleet engine: the surface of azure-iot-device's
ProvisioningDeviceClient that device/provisioning.py uses (`register()`), for a symmetric key (a group
enrollment's derived key or an individual one).

Protocol (https://learn.microsoft.com/azure/iot-dps/iot-dps-mqtt-support): CONNECT as
`{idScope}/registrations/{registrationId}/api-version=...`, SUBSCRIBE `$dps/registrations/res/#`, PUBLISH
`iotdps-register`; a 202 answer is polled with `iotdps-get-operationstatus` after its retry-after; a
200 with status "assigned" names the hub and device id. 429 means slow down and try again.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

from azure.iot.device import exceptions as sdk_errors

from mqttcodec import Connect, Publish
from hubsettings import ProvisioningSettings, build_token
from hubsettings.connection_string import split_host_port

from . import topics
from .hub_client import dial
from .link import FleetLink
from .mqtt import ConnectionClosed, MqttConnection
from .pacing import THROTTLED_SECONDS

POLL_SECONDS = 2.0  # when a 202 names no retry-after
MAX_POLLS = 30


class ProvisioningClient:
    def __init__(self, settings: ProvisioningSettings, ca_pem: str | None, link: FleetLink):
        self._settings = settings
        self._link = link
        self._ssl = link.ssl_context(ca_pem)
        self._answers: dict[str, asyncio.Future[tuple[int, dict[str, str], Any]]] = {}
        self._next_rid = 0

    async def register(self) -> Any:
        """Register once (the caller retries): an object with .status and .registration_state
        (.assigned_hub, .device_id, .sub_status), as the SDK returns. Raises CredentialError,
        ConnectionFailedError, ServiceError (refused by DPS) or ClientError (DPS failed; try again)."""
        s = self._settings
        host, port = split_host_port(s.host)
        token = build_token(f"{s.id_scope}/registrations/{s.registration_id}", s.symmetric_key,
                            ttl=self._link.token_ttl)
        connect = Connect(s.registration_id, username=topics.dps_username(s.id_scope, s.registration_id),
                          password=token.encode(), keepalive=self._link.keepalive, clean_session=True)
        async with self._link.dps_gate.slot():
            connection = await dial(self._link, host, host, port or self._link.port, connect,
                                    on_publish=self._on_publish, on_lost=self._on_lost,
                                    subscriptions=(topics.DPS_RESPONSES + "#",), ssl_context=self._ssl,
                                    target=f"DPS {s.host}")
            try:
                return await asyncio.wait_for(self._register(connection),
                                              self._link.handshake_timeout + MAX_POLLS * POLL_SECONDS)
            except TimeoutError:
                raise sdk_errors.ClientError(f"DPS {s.host} did not finish the registration in time") from None
            finally:
                connection.on_lost = None
                connection.disconnect()

    async def _register(self, connection: MqttConnection) -> Any:
        body = json.dumps({"registrationId": self._settings.registration_id}).encode()
        request = (topics.dps_register, body)
        for _ in range(MAX_POLLS):
            status, query, answer = await self._ask(connection, *request)
            if status == 200 and isinstance(answer, dict):
                self._link.stats.registrations += 1
                return _result(answer)
            if status == 202 and isinstance(answer, dict) and answer.get("operationId"):
                operation = str(answer["operationId"])
                request = (lambda rid: topics.dps_status(rid, operation), b"")
                await asyncio.sleep(_seconds(query.get("retry-after"), POLL_SECONDS))
                continue
            if status == 429:
                self._link.stats.throttled += 1
                await asyncio.sleep(_seconds(query.get("retry-after"), THROTTLED_SECONDS)
                                    * (0.5 + self._link.rng.random()))
                continue
            raise _answer_error(status, answer, self._settings)
        raise sdk_errors.ClientError(f"DPS {self._settings.host} kept the registration pending")

    async def _ask(self, connection: MqttConnection, topic_for: Any, body: bytes) -> tuple[int, dict[str, str], Any]:
        self._next_rid += 1
        rid = str(self._next_rid)
        waiter: asyncio.Future[tuple[int, dict[str, str], Any]] = asyncio.get_running_loop().create_future()
        self._answers[rid] = waiter
        try:
            connection.publish(topic_for(rid), body, qos=1)
            return await waiter
        except ConnectionClosed as e:
            raise sdk_errors.ConnectionDroppedError(f"DPS {self._settings.host} dropped the connection") from e
        finally:
            self._answers.pop(rid, None)

    def _on_publish(self, connection: MqttConnection, packet: Publish) -> None:
        if not packet.topic.startswith(topics.DPS_RESPONSES):
            return
        query = topics.query_of(packet.topic)
        waiter = self._answers.get(query.get("$rid", ""))
        status = topics.status_of(packet.topic, topics.DPS_RESPONSES)
        if waiter is None or waiter.done() or status is None:
            return
        try:
            answer = json.loads(bytes(packet.payload)) if bytes(packet.payload).strip() else None
        except ValueError:
            answer = None
        waiter.set_result((status, query, answer))

    def _on_lost(self, connection: MqttConnection) -> None:
        for waiter in self._answers.values():
            if not waiter.done():
                waiter.set_exception(ConnectionClosed("connection lost"))


def _seconds(value: str | None, default: float) -> float:
    try:
        return min(60.0, max(0.1, float(value))) if value else default
    except ValueError:
        return default


def _answer_error(status: int, answer: Any, settings: ProvisioningSettings) -> Exception:
    message = answer.get("message") if isinstance(answer, dict) else None
    code = answer.get("errorCode") if isinstance(answer, dict) else None
    detail = f"{status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    if status == 401:
        return sdk_errors.CredentialError(f"DPS {settings.host} refused the credentials ({detail})")
    if 400 <= status < 500:
        return sdk_errors.ServiceError(f"DPS answered {detail}")
    return sdk_errors.ClientError(f"DPS {settings.host} answered {detail}")


def _result(answer: dict[str, Any]) -> Any:
    state = answer.get("registrationState") or {}
    return SimpleNamespace(
        operation_id=answer.get("operationId"), status=answer.get("status"),
        registration_state=SimpleNamespace(assigned_hub=state.get("assignedHub"), device_id=state.get("deviceId"),
                                           sub_status=state.get("substatus"), payload=state.get("payload")))
