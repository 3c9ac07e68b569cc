"""The fleet engine's clients against the emulator's own hub, device front and TLS listener, in this
process on a loopback port: DPS registration, the listener's DeviceAgent answering methods and
desired patches, CONNACK refusals, a restart of the listener (every device comes back), token renewal."""

import asyncio
import io

import pytest
from azure.iot.device import exceptions as sdk_errors

from device.app import DeviceAgent, RunOptions
from device.connecting import Backoff
from device.eventlog import EventLog
from device.fleet.dps_client import ProvisioningClient
from device.fleet.factory import FleetClientFactory
from device.fleet.hub_client import HubClient
from device.fleet.link import FleetLink
from device.fleet.pacing import Gate, Retry
from device.sdk import HubIdentity
from emulator.certs import ensure_certificates, server_ssl_context
from emulator.hub import Hub
from emulator.mqtt.device_front import DeviceFront
from emulator.mqtt.server import MqttServer
from hubsettings import ProvisioningSettings, derive_device_key, wellknown

WAIT = 20  # generous bound for a loaded machine; never reached when things work


class Emulator:
    """Hub + device front + MQTT/TLS listener; `restart()` closes every connection and listens again."""

    def __init__(self, certs):
        self.certs = certs
        self.hub = Hub("localhost")
        self.hub.register_well_known()
        self.front = DeviceFront(self.hub)
        self.server: MqttServer | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = MqttServer(self.front, server_ssl_context(self.certs))
        self.port = await self.server.start("127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server:
            await self.server.stop()
            self.server = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@pytest.fixture
async def emulator(tmp_path):
    running = Emulator(ensure_certificates(tmp_path / "certs", ["localhost", "127.0.0.1"]))
    await running.start()
    yield running
    await running.stop()


def make_link(emulator: Emulator, **overrides) -> FleetLink:
    options = dict(hub_gate=Gate(10, None), dps_gate=Gate(10, None), port=emulator.port,
                   retry=Retry(initial=0.05, maximum=0.2), handshake_timeout=WAIT)
    options.update(overrides)
    return FleetLink(**options)


def provisioning(device_id: str) -> ProvisioningSettings:
    return ProvisioningSettings("localhost", wellknown.DPS_ID_SCOPE, device_id,
                                derive_device_key(wellknown.DPS_GROUP_KEY, device_id), from_group_key=True)


async def eventually(check, what: str) -> None:
    async def until():
        while not check():
            await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(until(), WAIT)
    except TimeoutError:
        raise AssertionError(f"not within {WAIT} s: {what}") from None


async def start_agent(emulator: Emulator, link: FleetLink, device_id: str,
                      **options) -> tuple[DeviceAgent, io.StringIO]:
    from hubsettings import DeviceSettings

    out = io.StringIO()
    settings = DeviceSettings(None, provisioning(device_id), None, "test")
    agent = DeviceAgent(settings, RunOptions(**{"telemetry": False, **options}, backoff=Backoff(timeout=WAIT)),
                        FleetClientFactory(link), EventLog(out), ca_pem=emulator.certs.ca_pem())
    await asyncio.wait_for(agent.start(), WAIT)
    return agent, out


async def test_a_device_registered_through_dps_answers_like_the_listener(emulator):
    link = make_link(emulator)
    agent, out = await start_agent(emulator, link, "fleet-a")
    try:
        assert emulator.hub.get_device("fleet-a").device_id == "fleet-a"  # DPS created it
        result = await emulator.hub.invoke_method("fleet-a", "lockDoor", {"lockTime": "10m"}, response_timeout=WAIT)
        assert result.status == 200 and result.payload == {"Response": "lockDoor called successfully"}
        await eventually(lambda: (emulator.hub.get_twin("fleet-a")["properties"]["reported"].get("door") or {})
                         .get("locked") is True, "the door reported locked")
        emulator.hub.patch_desired("fleet-a", {"floor": 3})
        await eventually(lambda: (emulator.hub.get_twin("fleet-a")["properties"]["reported"].get("floor") or {})
                         .get("ac") == 200, "floor acknowledged")
        unknown = await emulator.hub.invoke_method("fleet-a", "selfDestruct", None, response_timeout=WAIT)
        assert unknown.status == 404
        await eventually(lambda: link.stats.methods_answered == 2, "both answers acknowledged by the hub")
    finally:
        await agent.stop()
    assert link.stats.registrations == 1 and link.stats.methods_answered == 2
    assert link.stats.desired_patches == 1 and link.stats.connected == 0
    assert "method lockDoor -> 200" in out.getvalue()


async def test_a_wrong_key_is_a_credential_error_at_connect_and_at_dps(emulator):
    link = make_link(emulator)
    emulator.hub.create_device("fleet-b")
    wrong = HubIdentity("localhost", "fleet-b", symmetric_key=derive_device_key(wellknown.DPS_GROUP_KEY, "other"))
    client = HubClient(wrong, emulator.certs.ca_pem(), link)
    with pytest.raises(sdk_errors.CredentialError, match="CONNACK"):
        await client.connect()
    assert link.stats.connected == 0
    bad = ProvisioningSettings("localhost", wellknown.DPS_ID_SCOPE, "fleet-c",
                               derive_device_key(wellknown.DPS_GROUP_KEY, "not-fleet-c"))
    with pytest.raises(sdk_errors.CredentialError):
        await ProvisioningClient(bad, emulator.certs.ca_pem(), link).register()


async def test_nothing_listening_is_a_connection_failure(emulator):
    link = make_link(emulator, handshake_timeout=5)
    await emulator.stop()
    client = HubClient(HubIdentity("localhost", "x", symmetric_key=wellknown.DEVICE_KEY), emulator.certs.ca_pem(), link)
    with pytest.raises(sdk_errors.ConnectionFailedError):
        await client.connect()


async def test_every_device_comes_back_after_a_restart_and_still_answers(emulator):
    link = make_link(emulator)
    agents = [await start_agent(emulator, link, f"fleet-r{i}") for i in range(5)]
    try:
        await emulator.restart()
        await eventually(lambda: link.stats.reconnects == 5 and link.stats.connected == 5, "every device back")
        for index, (agent, out) in enumerate(agents):
            result = await emulator.hub.invoke_method(f"fleet-r{index}", "turnon", None, response_timeout=WAIT)
            assert result.status == 200
            await eventually(lambda: "reconnected" in out.getvalue(), "the agent saw the reconnect")
            assert "connection lost" in out.getvalue()
    finally:
        for agent, _ in agents:
            await agent.stop()


async def test_the_token_is_renewed_before_it_expires_without_a_word(emulator):
    link = make_link(emulator, token_ttl=3, renew_before=2)  # renewed after 1 s
    agent, out = await start_agent(emulator, link, "fleet-t")
    client = agent._client
    first = client._connection
    try:
        await eventually(lambda: client._connection is not None and client._connection is not first,
                         "a new connection with a new token")
        result = await emulator.hub.invoke_method("fleet-t", "blink", 2, response_timeout=WAIT)
        assert result.status == 200
        assert link.stats.connected == 1 and client.connected
    finally:
        await agent.stop()
    assert link.stats.reconnects == 0
    assert "connection lost" not in out.getvalue()


async def test_a_device_deleted_while_connected_is_refused_on_reconnect_and_reported(emulator):
    link = make_link(emulator)
    agent, out = await start_agent(emulator, link, "fleet-d")
    try:
        emulator.hub.delete_device("fleet-d")
        await emulator.restart()
        await asyncio.wait_for(agent.credentials_refused.wait(), WAIT)
    finally:
        await agent.stop()
    assert "the hub refused this device's credentials" in out.getvalue()
    assert link.stats.connected == 0


async def test_a_payload_far_bigger_than_the_small_tls_read_buffer_arrives_whole(emulator, monkeypatch):
    import asyncio.sslproto

    from device.fleet.mqtt import TLS_READ_BUFFER

    monkeypatch.setattr(asyncio.sslproto.SSLProtocol, "max_size", TLS_READ_BUFFER)  # as the fleet runs
    link = make_link(emulator)
    agent, out = await start_agent(emulator, link, "fleet-big")
    try:
        padding = "x" * (100 * 1024)
        result = await emulator.hub.invoke_method("fleet-big", "lockDoor", {"lockTime": "10m", "pad": padding},
                                                  response_timeout=WAIT)
        assert result.status == 400 and "unknown field 'pad'" in result.payload["Response"]
    finally:
        await agent.stop()


def test_connack_refusals_map_to_the_sdk_exceptions_the_listener_sorts():
    from device.fleet.hub_client import ServerUnavailable, refusal_error

    assert isinstance(refusal_error(5, "IoT hub h"), sdk_errors.CredentialError)
    assert isinstance(refusal_error(4, "IoT hub h"), sdk_errors.CredentialError)
    throttled = refusal_error(3, "IoT hub h")
    assert isinstance(throttled, ServerUnavailable) and isinstance(throttled, sdk_errors.ConnectionFailedError)
    assert type(refusal_error(2, "IoT hub h")) is sdk_errors.ConnectionFailedError


async def test_telemetry_reaches_the_hub_as_json_with_its_content_type(emulator):
    import json

    link = make_link(emulator)
    agent, _ = await start_agent(emulator, link, "fleet-s", telemetry=True, telemetry_interval=0.05)
    try:
        await eventually(lambda: len(emulator.hub.telemetry.messages("fleet-s")) >= 2, "two readings")
    finally:
        await agent.stop()
    message = emulator.hub.telemetry.messages("fleet-s")[0]
    assert set(json.loads(message.body)) == {"temperature", "humidity"}
    assert message.system_properties.get("$.ct") == "application/json"
    assert message.system_properties.get("$.ce") == "utf-8"
    assert link.stats.telemetry_sent >= 2

