"""The HTTPS listener's own TLS handshakes: a client that does not trust the emulator's CA, one that speaks
plain HTTP, one that sends nothing, and a port check each leave the right line in the log (and the
listener keeps serving the clients that do trust it)."""

from __future__ import annotations

import asyncio
import logging
import ssl

import aiohttp
import pytest

from emulator.certs import ensure_certificates, server_ssl_context
from emulator.rest import create_app, listener, start_rest_server

from .conftest import API, token


@pytest.fixture
def certificates(tmp_path):
    return ensure_certificates(tmp_path / "certs", ["127.0.0.1"])


@pytest.fixture
async def server(hub, certificates):
    running = await start_rest_server(create_app(hub), "127.0.0.1", 0, server_ssl_context(certificates))
    yield running
    await running.stop()


def records(caplog, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "emulator.rest" and r.levelno == level]


async def eventually(predicate, what: str):
    for _ in range(400):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def get_devices(port: int, trust: ssl.SSLContext, clock) -> int:
    async with aiohttp.ClientSession() as session:
        url = f"https://127.0.0.1:{port}/devices/myDeviceId?{API}"
        async with session.get(url, ssl=trust, headers={"Authorization": token(now=clock())}) as response:
            return response.status


async def test_a_client_without_the_ca_is_told_how_to_trust_it(server, certificates, clock, caplog):
    caplog.set_level(logging.DEBUG, logger="emulator.rest")
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await get_devices(server.port, ssl.create_default_context(), clock)  # the system CAs only
    await eventually(lambda: records(caplog), "a log line")
    [line] = records(caplog)
    assert "TLS handshake failed: " in line  # an alert, or (asyncio clients) a hang-up
    assert (f"the client did not trust the emulator's CA: set REQUESTS_CA_BUNDLE={certificates.ca_cert} (service "
            "SDK, az), SSL_CERT_FILE (Python device SDK), NODE_EXTRA_CA_CERTS (Node.js), --cacert (curl)") in line
    # and it serves a client that trusts the CA as before
    assert await get_devices(server.port, ssl.create_default_context(cafile=str(certificates.ca_cert)), clock) == 200


async def test_a_hang_up_mid_handshake_gets_the_same_hint(server, caplog):
    """What Node.js does when it rejects the certificate: the client hello, then the connection closes."""
    caplog.set_level(logging.DEBUG, logger="emulator.rest")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    hello = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(),
                                                  server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        hello.do_handshake()
    writer.write(outgoing.read())
    await writer.drain()
    await reader.read(1)  # the server's answer began
    writer.close()
    await eventually(lambda: records(caplog), "a log line")
    assert "it hung up mid-handshake: the client did not trust the emulator's CA" in records(caplog)[0]


async def test_plain_http_is_told_to_use_https(server, caplog):
    caplog.set_level(logging.DEBUG, logger="emulator.rest")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /devices HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await reader.read()  # closed by the server
    writer.close()
    await eventually(lambda: records(caplog), "a log line")
    assert records(caplog) == [f"127.0.0.1:{writer.get_extra_info('sockname')[1]}: TLS handshake failed: it spoke "
                               "plain HTTP to the HTTPS port: use https://"]


async def test_a_port_check_is_logged_at_debug_only(server, caplog):
    caplog.set_level(logging.DEBUG, logger="emulator.rest")
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.close()
    await eventually(lambda: records(caplog, logging.DEBUG), "a debug line")
    assert "closed the connection without a byte" in records(caplog, logging.DEBUG)[0]
    assert records(caplog) == []


async def test_a_client_that_sends_nothing_is_closed(server, caplog, monkeypatch):
    monkeypatch.setattr(listener, "HANDSHAKE_TIMEOUT", 0.2)
    caplog.set_level(logging.DEBUG, logger="emulator.rest")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert await asyncio.wait_for(reader.read(), 30) == b""  # closed by the server
    writer.close()
    assert "sent nothing for 0.2 s after connecting: closing (is it speaking TLS?)" in records(caplog)[0]


async def test_stopping_with_a_handshake_in_progress(hub, certificates):
    running = await start_rest_server(create_app(hub), "127.0.0.1", 0, server_ssl_context(certificates))
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(b"\x16\x03\x01\x00\x10")  # the start of a TLS record, never finished
    await writer.drain()
    await asyncio.sleep(0.05)
    await asyncio.wait_for(running.stop(), 30)
    assert await asyncio.wait_for(reader.read(), 30) == b""
    writer.close()


@pytest.mark.parametrize("error, says", [
    (ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca"),
     "TLS alert TLSV1_ALERT_UNKNOWN_CA: the client did not trust"),
    (ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] bad certificate"),
     "TLS alert SSLV3_ALERT_BAD_CERTIFICATE: the client did not trust"),
    (ssl.SSLError(1, "[SSL: UNSUPPORTED_PROTOCOL] unsupported protocol"),
     "TLS error UNSUPPORTED_PROTOCOL (the emulator speaks TLS 1.2 and 1.3)"),
    (ssl.SSLError(1, "[SSL: HTTP_REQUEST] http request"), "it spoke plain HTTP to the HTTPS port: use https://"),
    (ConnectionResetError(), "it hung up mid-handshake: the client did not trust"),
    (TimeoutError(), "it did not complete the TLS handshake within 10 s"),
])
def test_each_failure_gets_its_likely_fix(error, says):
    if isinstance(error, ssl.SSLError):  # as OpenSSL fills them in
        error.reason = str(error.args[1]).split("]")[0].removeprefix("[SSL: ")
    assert listener.handshake_failure(error, "/ca.pem").startswith(says)
