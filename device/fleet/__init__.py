"""Fleet mode (`iothub-device --count N`, `--connection-strings-file`): up to 10,000 simulated devices in
one event loop, each the one-device listener's own DeviceAgent (device/app.py) on lean clients that
speak IoT Hub's and DPS's documented MQTT (hub_client.py, dps_client.py) over the project's sans-I/O
MQTT codec (mqttcodec, through mqtt.py). runner.py starts, paces and watches the fleet;
launch.py wires it up for the CLI.
"""
