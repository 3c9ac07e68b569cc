"""What a client sends IoT Hub, written from Microsoft's "Communicate with an IoT hub
using the MQTT protocol" and the MQTT 3.1.1 specification, independently of the project's own code (so a
shared mistake cannot hide): the SAS token, the username, and hand-encoded packets for what the command-line
clients cannot send (a PUBLISH resent with DUP=1)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import ssl
import time
import urllib.parse

API_VERSION = "2021-04-12"


def generate_sas_token(uri: str, key: str, policy_name: str | None = None, expiry: int = 3600) -> str:
    """Microsoft's sample, as published: sr and sig URL-encoded, se in seconds since the epoch, skn the
    shared access policy (service tokens only)."""
    ttl = int(time.time() + expiry)
    sign_key = "%s\n%d" % (urllib.parse.quote_plus(uri), ttl)
    signature = base64.b64encode(hmac.HMAC(base64.b64decode(key), sign_key.encode("utf-8"), hashlib.sha256).digest())
    fields = {"sr": uri, "sig": signature, "se": str(ttl)}
    if policy_name:
        fields["skn"] = policy_name
    return "SharedAccessSignature " + urllib.parse.urlencode(fields)


def username(host: str, device_id: str) -> str:
    return f"{host}/{device_id}/?api-version={API_VERSION}"


# ---- MQTT 3.1.1 packets, by hand --------------------------------------------------------------------------

def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return len(data).to_bytes(2, "big") + data


def connect_packet(client_id: str, user: str, password: str, *, clean_session: bool) -> bytes:
    flags = 0x80 | 0x40 | (0x02 if clean_session else 0)  # username, password
    body = _string("MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big")
    body += _string(client_id) + _string(user) + _string(password)
    return bytes([0x10]) + _length(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int, *, dup: bool) -> bytes:
    """QoS 1 PUBLISH (fixed header 0x32, DUP adds 0x08)."""
    body = _string(topic) + packet_id.to_bytes(2, "big") + payload
    return bytes([0x32 | (0x08 if dup else 0)]) + _length(len(body)) + body


DISCONNECT = bytes([0xE0, 0x00])


class RawDevice:
    """One TLS connection that sends prepared packets and reads the fixed-size answers it expects."""

    def __init__(self, address: str, host: str, ca_file: str, port: int = 8883, timeout: float = 30.0):
        context = ssl.create_default_context(cafile=ca_file)
        raw = socket.create_connection((address, port), timeout=timeout)
        self.sock = context.wrap_socket(raw, server_hostname=host)

    def _read_exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError(f"closed after {data!r}")
            data += chunk
        return data

    def connect(self, packet: bytes) -> int:
        """Send CONNECT; the CONNACK return code."""
        self.sock.sendall(packet)
        connack = self._read_exactly(4)
        assert connack[0] == 0x20, connack
        return connack[3]

    def publish(self, packet: bytes) -> int:
        """Send a QoS 1 PUBLISH; the packet id of the PUBACK."""
        self.sock.sendall(packet)
        puback = self._read_exactly(4)
        assert puback[0] == 0x40, puback
        return int.from_bytes(puback[2:4], "big")

    def close(self, graceful: bool = True) -> None:
        try:
            if graceful:
                self.sock.sendall(DISCONNECT)
        finally:
            self.sock.close()
