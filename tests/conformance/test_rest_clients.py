"""Plain HTTPS clients against the service front: curl with exactly the request az sends, and what the
emulator logs when a client does not trust its CA (curl, Python, Node.js) or speaks plain HTTP to it."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import threading

import pytest
import requests

from hubsettings import wellknown

from .conftest import node_env
from .test_mosquitto import Subscriber, options, run, wait_online
from .wire import generate_sas_token

pytestmark = pytest.mark.e2e

API = "api-version=2021-04-12"


@pytest.fixture(scope="session")
def curl() -> str:
    path = shutil.which("curl")
    if not path:
        pytest.skip("curl is not installed")
    return path


def base_url(hub) -> str:
    """https://<host>, with the port only where the emulator is on its fallback port."""
    return f"https://{hub.host_name}" + ("" if hub.on_443 else f":{hub.rest_port}")


def service_token(hub) -> str:
    return generate_sas_token(hub.host_name, wellknown.POLICIES["iothubowner"][0], "iothubowner")


def test_method_call_as_az_sends_it_with_numbers_as_strings(curl, mosquitto, hub):
    """`az iot hub invoke-device-method` sends its timeouts as JSON strings ("30"); IoT Hub takes them."""
    device_id, key = hub.add_device("curl-az")
    subscriber = Subscriber(mosquitto, hub, device_id, key, "$iothub/methods/POST/#")
    wait_online(hub, device_id, subscriber)
    body = {"methodName": "reboot", "payload": {}, "responseTimeoutInSeconds": "30", "connectTimeoutInSeconds": "30"}
    answer: dict = {}

    def call() -> None:
        answer["curl"] = subprocess.run(
            [curl, "-sS", "--cacert", hub.ca_file, "-X", "POST", "-H", f"Authorization: {service_token(hub)}",
             "-H", "Content-Type: application/json", "-d", json.dumps(body), "-w", "\n%{http_code}",
             f"{base_url(hub)}/twins/{device_id}/methods?{API}"], capture_output=True, text=True, timeout=90)

    caller = threading.Thread(target=call)
    caller.start()
    while caller.is_alive() and subscriber.process.poll() is None:
        caller.join(0.1)
    if not caller.is_alive():  # answered before reaching the device: a refusal, shown below
        subscriber.process.terminate()
    _, out, _ = subscriber.finish()
    if "$rid=" in out:  # the request reached the device: answer it
        rid = out.strip().partition(" ")[0].split("$rid=", 1)[1]
        run(mosquitto["mosquitto_pub"], *options(hub, device_id, key), "-q", "1",
            "-t", f"$iothub/methods/res/200/?$rid={rid}", "-m", '{"ok": true}')
    caller.join(120)
    response, _, status = answer["curl"].stdout.rpartition("\n")
    assert status == "200", answer["curl"].stdout + answer["curl"].stderr
    assert json.loads(response) == {"status": 200, "payload": {"ok": True}}


# ---- what the emulator logs when a TLS handshake fails ----------------------------------------------------

def rest_log(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "emulator.rest" and r.levelno >= logging.INFO]


@pytest.fixture
def rest_logs(caplog):
    caplog.set_level(logging.DEBUG, logger="emulator.rest")
    return caplog


def wait_for_record(caplog, text: str) -> logging.LogRecord:
    import time
    deadline = time.monotonic() + 30
    while True:
        found = [r for r in rest_log(caplog) if text in r.getMessage()]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no log line with {text!r}: {[r.getMessage() for r in rest_log(caplog)]}"
        time.sleep(0.05)


def assert_names_every_fix(message: str, ca_file: str) -> None:
    for part in (f"REQUESTS_CA_BUNDLE={ca_file} (service SDK, az)", "SSL_CERT_FILE (Python device SDK)",
                 "NODE_EXTRA_CA_CERTS (Node.js)", "--cacert (curl)"):
        assert part in message, message


def test_curl_without_the_ca_is_told_how_to_trust_it(curl, hub, rest_logs):
    done = subprocess.run([curl, "-sS", f"{base_url(hub)}/devices?{API}"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0  # curl refuses the certificate, as it should
    record = wait_for_record(rest_logs, "TLS handshake failed")
    assert record.levelno == logging.INFO
    assert "the client did not trust the emulator's CA" in record.getMessage()
    assert_names_every_fix(record.getMessage(), hub.ca_file)


def test_python_without_the_ca_is_told_how_to_trust_it(hub, rest_logs):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{base_url(hub)}/devices?{API}", timeout=30)
    record = wait_for_record(rest_logs, "TLS handshake failed")
    assert_names_every_fix(record.getMessage(), hub.ca_file)


def test_node_without_the_ca_is_told_how_to_trust_it(node, hub, rest_logs):
    """Node.js completes the handshake and checks the certificate afterwards, then hangs up unheard."""
    env = node_env(hub)
    del env["NODE_EXTRA_CA_CERTS"]
    script = (f"require('https').get('{base_url(hub)}/devices?{API}', () => process.exit(0))"
              ".on('error', (e) => { console.log(e.code); process.exit(3); })")
    done = subprocess.run([node, "-e", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and ("VERIFY" in done.stdout or "SELF_SIGNED" in done.stdout), done
    record = wait_for_record(rest_logs, "NODE_EXTRA_CA_CERTS")
    assert record.levelno == logging.INFO
    assert_names_every_fix(record.getMessage(), hub.ca_file)


def test_plain_http_to_the_https_port_is_told_to_use_https(hub, rest_logs):
    with socket.create_connection((hub.address, hub.rest_port), timeout=30) as plain:
        plain.sendall(b"GET /devices HTTP/1.1\r\nHost: x\r\n\r\n")
        plain.recv(100)
    record = wait_for_record(rest_logs, "use https://")
    assert record.levelno == logging.INFO


def test_a_port_check_is_not_reported_as_a_client_problem(hub, rest_logs):
    """Connecting and closing without a byte (readiness probes do) is logged at debug only."""
    with socket.create_connection((hub.address, hub.rest_port), timeout=30):
        pass
    with pytest.raises(requests.exceptions.SSLError):  # a later failure, to know the first was processed
        requests.get(f"{base_url(hub)}/devices?{API}", timeout=30)
    wait_for_record(rest_logs, "TLS handshake failed")
    assert not [r for r in rest_log(rest_logs) if "closed the connection before" in r.getMessage()]
