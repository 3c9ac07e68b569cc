"""Outgoing AMQP frames with every performative field present, as Azure's services send them.

Proton omits a performative's trailing fields when they are null (the AMQP spec allows it); Azure's
services send them all, and azure-eventhub's own AMQP stack (pyamqp, its default transport) indexes the
fields it reads without checking the list's length (an `open` without its properties fails with
"list index out of range"). This pads each performative's field list with nulls to its full length.
Frames are passed through otherwise untouched; a frame split across writes waits for its rest.
"""

from __future__ import annotations

import struct

AMQP_HEADER = b"AMQP"
# Performative descriptor (smallulong) -> number of fields in the AMQP 1.0 spec.
FIELD_COUNTS = {0x10: 10, 0x11: 8, 0x12: 14, 0x13: 11, 0x14: 11, 0x15: 6, 0x16: 3, 0x17: 1, 0x18: 1}
NULL = b"\x40"


def pad_performative(body: bytes) -> bytes:
    """A frame body (performative, then any payload) with the performative's missing fields as nulls."""
    if len(body) < 4 or body[0] != 0x00 or body[1] != 0x53 or body[2] not in FIELD_COUNTS:
        return body
    full = FIELD_COUNTS[body[2]]
    constructor = body[3]
    if constructor == 0x45:  # list0
        count, items, rest = 0, b"", body[4:]
    elif constructor == 0xC0:  # list8: size, count, items
        size, count = body[4], body[5]
        items, rest = body[6:5 + size], body[5 + size:]
    elif constructor == 0xD0:  # list32
        size, count = struct.unpack(">II", body[4:12])
        items, rest = body[12:8 + size], body[8 + size:]
    else:
        return body
    if count >= full:
        return body
    items += NULL * (full - count)
    if len(items) + 1 <= 255:
        encoded = bytes((0xC0, len(items) + 1, full)) + items
    else:
        encoded = b"\xd0" + struct.pack(">II", len(items) + 4, full) + items
    return body[:3] + encoded + rest


class FramePadder:
    """Stateful: feed proton's output bytes, get them back with padded performatives."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        buffer = self._pending + data
        out = []
        position = 0
        while True:
            if buffer[position:position + 4] == AMQP_HEADER:
                if len(buffer) - position < 8:
                    break
                out.append(buffer[position:position + 8])
                position += 8
                continue
            if len(buffer) - position < 8:
                break
            size = struct.unpack(">I", buffer[position:position + 4])[0]
            if size < 8 or len(buffer) - position < size:
                if size < 8:  # not a frame we understand: pass the rest through unchanged
                    out.append(buffer[position:])
                    position = len(buffer)
                break
            header_end = position + buffer[position + 4] * 4
            body = pad_performative(buffer[header_end:position + size]) if buffer[position + 5] == 0 else \
                buffer[header_end:position + size]
            header = bytearray(buffer[position:header_end])
            header[0:4] = struct.pack(">I", len(header) + len(body))
            out.append(bytes(header) + body)
            position += size
        self._pending = buffer[position:]
        return b"".join(out)
