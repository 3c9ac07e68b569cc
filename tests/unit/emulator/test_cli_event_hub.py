"""`iothub-emulator` and the Event Hubs-compatible endpoint: its connection string in the banner (key
masked unless asked) and the discovery file, and --consumer-group."""

from __future__ import annotations

from click.testing import CliRunner

from emulator import cli
from emulator.server import EmulatorConfig, EmulatorServer
from hubsettings import read_discovery, wellknown

OWNER_KEY = wellknown.POLICIES["iothubowner"][0]


async def test_banner_and_discovery_file_give_the_event_hubs_connection_string(tmp_path):
    config = EmulatorConfig(address="127.0.0.1", mqtt_port=0, rest_port=0, amqp_port=0, data_dir=tmp_path / "data",
                            discovery_file=tmp_path / "discovery.json", consumer_groups=("analytics",))
    server = EmulatorServer(config)
    await server.start()
    try:
        masked = cli.describe(server, show_keys=False)
        shown = cli.describe(server, show_keys=True)
        info = read_discovery(tmp_path / "discovery.json")
        groups = server.hub.telemetry.consumer_groups
    finally:
        await server.stop()
    expected = (f"Endpoint=sb://localhost:{server.amqp_port}/;SharedAccessKeyName=iothubowner;"
                f"SharedAccessKey={OWNER_KEY};EntityPath=localhost")
    assert info is not None and info.event_hub_connection_string == expected
    assert expected in shown and OWNER_KEY not in masked
    assert f"Event Hubs-compatible (telemetry): Endpoint=sb://localhost:{server.amqp_port}/" in masked
    assert groups == ["$Default", "analytics"]


def test_a_bad_consumer_group_name_is_a_usage_error():
    result = CliRunner().invoke(cli.main, ["--consumer-group", "no spaces"])
    assert result.exit_code == 2 and "invalid consumer group name 'no spaces'" in result.output


def test_too_many_consumer_groups_is_a_usage_error():
    result = CliRunner().invoke(cli.main, [arg for n in range(20) for arg in ("--consumer-group", f"g{n}")])
    assert result.exit_code == 2 and "at most 20 consumer groups" in result.output
