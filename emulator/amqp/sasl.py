"""The SASL layer of an AMQP 1.0 connection, server side, before the AMQP engine sees any byte.

IoT Hub offers SASL ANONYMOUS and MSSBCBS (Microsoft's name for "anonymous now, a `$cbs` put-token
next": uamqp, so azure-iot-hub and the az CLI, picks it) and SASL PLAIN (username
`{policy}@sas.root.{hub}`, password a SAS token: the Java and C SDKs). Proton's built-in SASL (without Cyrus) can only offer ANONYMOUS as a server, so the
exchange is handled here: the frames are tiny, and proton's own codec (`proton.Data`) encodes and
decodes their bodies. Sans-I/O: `receive_data()` eats bytes, `data_to_send()` returns the replies.
A client may also skip SASL and send the AMQP header at once (the Node SDK's azure-iothub does), as
IoT Hub allows: it then proves itself with `$cbs` like an anonymous one.

    client: "AMQP" 3 1 0 0                      server: "AMQP" 3 1 0 0, sasl-mechanisms
    client: sasl-init (mechanism, response)     server: sasl-outcome (ok / auth failed)
    client: "AMQP" 0 1 0 0 ... -> proton
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from proton import UNDESCRIBED, Array, Data, Described, symbol, ubyte, ulong

SASL_HEADER = b"AMQP\x03\x01\x00\x00"
AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
MECHANISMS = ("MSSBCBS", "ANONYMOUS", "PLAIN")
MAX_SASL_FRAME = 64 * 1024  # a SAS token is a few hundred bytes

_MECHANISMS_FRAME, _INIT_FRAME, _OUTCOME_FRAME = 0x40, 0x41, 0x44
OUTCOME_OK, OUTCOME_AUTH = 0, 1


class SaslError(Exception):
    """The peer broke the SASL exchange (bad header, malformed frame): close the connection."""


@dataclass(frozen=True)
class SaslIdentity:
    mechanism: Literal["MSSBCBS", "ANONYMOUS", "PLAIN", "NONE"]  # NONE: the client skipped SASL
    username: str | None = None
    password: str | None = None


#: Checks PLAIN credentials; returns a reason to refuse, or None to accept.
PlainCheck = Callable[[str, str], "str | None"]


def _frame(descriptor: int, fields: list[object]) -> bytes:
    data = Data()
    data.put_object(Described(ulong(descriptor), fields))
    body = bytes(data.encode())
    return struct.pack(">IBBH", 8 + len(body), 2, 1, 0) + body


class SaslServer:
    """One connection's SASL exchange. After `done`, `leftover` holds the bytes that follow it."""

    def __init__(self, check_plain: PlainCheck):
        self._check_plain = check_plain
        self._buffer = bytearray()
        self._out = bytearray()
        self._state: Literal["header", "init", "done", "failed"] = "header"
        self.identity: SaslIdentity | None = None
        self.refusal: str | None = None  # why PLAIN credentials were refused (outcome sent, then close)
        self.leftover = b""

    @property
    def done(self) -> bool:
        return self._state == "done"

    @property
    def failed(self) -> bool:
        return self._state == "failed"

    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def receive_data(self, data: bytes) -> None:
        """Raises SaslError on bytes that are not a SASL exchange."""
        if self._state in ("done", "failed"):
            raise SaslError("SASL is over")
        self._buffer += data
        if self._state == "header":
            if len(self._buffer) < 8:
                head = bytes(self._buffer)
                if not (SASL_HEADER.startswith(head) or AMQP_HEADER.startswith(head)):
                    raise SaslError(self._header_problem())
                return
            if bytes(self._buffer[:8]) == AMQP_HEADER:  # no SASL: everything goes to the AMQP engine
                self.identity = SaslIdentity("NONE")
                self.leftover = bytes(self._buffer)
                self._buffer.clear()
                self._state = "done"
                return
            if bytes(self._buffer[:8]) != SASL_HEADER:
                raise SaslError(self._header_problem())
            del self._buffer[:8]
            self._out += SASL_HEADER + _frame(_MECHANISMS_FRAME, [
                Array(UNDESCRIBED, Data.SYMBOL, *(symbol(m) for m in MECHANISMS))])
            self._state = "init"
        if self._state == "init":
            self._read_init()

    def _header_problem(self) -> str:
        head = bytes(self._buffer[:8])
        if head.startswith(b"AMQP"):
            # A protocol header we do not take: answer with ours, as the spec asks, then close.
            self._out += SASL_HEADER
            return (f"the client sent protocol header {head!r}; IoT Hub speaks AMQP 1.0 ({AMQP_HEADER!r}), "
                    f"with or without SASL first ({SASL_HEADER!r})")
        return (f"not an AMQP client (first bytes {head[:8]!r}): this port takes AMQP 1.0 over TLS from service "
                "SDKs (send_c2d_message); HTTPS goes to the REST port, MQTT to 8883")

    def _read_init(self) -> None:
        if len(self._buffer) < 8:
            return
        size, doff, frame_type, _ = struct.unpack(">IBBH", self._buffer[:8])
        if size < 8 or size > MAX_SASL_FRAME or doff < 2 or frame_type != 1:
            raise SaslError(f"malformed SASL frame header (size {size}, doff {doff}, type {frame_type})")
        if len(self._buffer) < size:
            return
        body = bytes(self._buffer[doff * 4:size])
        rest = bytes(self._buffer[size:])
        self._buffer.clear()
        mechanism, response = _decode_init(body)
        if mechanism in ("ANONYMOUS", "MSSBCBS"):
            self.identity = SaslIdentity(mechanism)  # type: ignore[arg-type]
        elif mechanism == "PLAIN":
            username, password = _plain_credentials(response)
            self.refusal = self._check_plain(username, password)
            if self.refusal is None:
                self.identity = SaslIdentity("PLAIN", username, password)
        else:
            self.refusal = f"SASL mechanism {mechanism!r} is not offered (only {', '.join(MECHANISMS)})"
        code = OUTCOME_OK if self.identity is not None else OUTCOME_AUTH
        self._out += _frame(_OUTCOME_FRAME, [ubyte(code)])
        self._state = "done" if self.identity is not None else "failed"
        self.leftover = rest


def _decode_init(body: bytes) -> tuple[str, bytes]:
    data = Data()
    try:
        data.decode(body)
        data.rewind()
        data.next()
        described = data.get_object()
    except Exception as e:  # noqa: BLE001 - proton raises its own DataException and others
        raise SaslError(f"undecodable SASL frame: {e}") from None
    if (not isinstance(described, Described) or described.descriptor != _INIT_FRAME
            or not isinstance(described.value, list) or not described.value):
        raise SaslError("expected sasl-init")
    fields = described.value
    mechanism = fields[0]
    response = fields[1] if len(fields) > 1 and fields[1] is not None else b""
    if not isinstance(mechanism, str):
        raise SaslError("sasl-init without a mechanism")
    return str(mechanism), bytes(response)


def _plain_credentials(response: bytes) -> tuple[str, str]:
    """RFC 4616: [authzid] NUL authcid NUL passwd."""
    parts = response.split(b"\x00")
    if len(parts) != 3:
        raise SaslError("SASL PLAIN response is not authzid NUL username NUL password")
    try:
        return parts[1].decode("utf-8"), parts[2].decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError("SASL PLAIN credentials are not UTF-8") from None
