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
MAX_FRAME_BYTES = 16 * 1024 * 1024  # beyond this a "frame" is not buffered here but handed to proton


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


def split_frames(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Whole frames (and protocol headers) at the start of `buffer`, and the incomplete rest."""
    frames = []
    position = 0
    while len(buffer) - position >= 8:
        if buffer[position:position + 4] == AMQP_HEADER:
            size = 8
        else:
            size = struct.unpack(">I", buffer[position:position + 4])[0]
            if not 8 <= size <= MAX_FRAME_BYTES:  # not a frame we wait for: hand it on whole, proton refuses it
                frames.append(buffer[position:])
                return frames, b""
        if len(buffer) - position < size:
            break
        frames.append(buffer[position:position + size])
        position += size
    return frames, buffer[position:]


def _is_amqp_frame(frame: bytes) -> bool:
    return len(frame) >= 8 and frame[:4] != AMQP_HEADER and frame[5] == 0 and frame[4] >= 2


class FramePadder:
    """Stateful: feed proton's output bytes, get them back with padded performatives."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        frames, self._pending = split_frames(self._pending + data)
        out = []
        for frame in frames:
            if _is_amqp_frame(frame):
                header_end = frame[4] * 4
                body = pad_performative(frame[header_end:])
                frame = struct.pack(">I", header_end + len(body)) + frame[4:header_end] + body
            out.append(frame)
        return b"".join(out)


#: open and close belong to the connection, not to the session on their channel: never dropped (the Node
#: service SDK ends the session on channel 0, then sends its close on channel 0 and waits for ours).
_CONNECTION_PERFORMATIVES = (0x10, 0x18)


class EndedChannelFilter:
    """Stateful: drops the frames a client sends on a channel after its own `end` on it (azure-eventhub
    detaches its links after ending their session when it closes). Azure ignores them; proton would
    close the whole connection with "no such channel"."""

    def __init__(self) -> None:
        self._pending = b""
        self._ended: set[int] = set()

    def feed(self, data: bytes) -> bytes:
        frames, self._pending = split_frames(self._pending + data)
        kept = []
        for frame in frames:
            if _is_amqp_frame(frame) and len(frame) > frame[4] * 4 + 2:
                channel = struct.unpack(">H", frame[6:8])[0]
                body = frame[frame[4] * 4:]
                code = body[2] if body[0] == 0x00 and body[1] == 0x53 else None
                if code == 0x11:  # begin
                    self._ended.discard(channel)
                elif channel in self._ended and code not in _CONNECTION_PERFORMATIVES:
                    continue  # a session frame on an ended session (a connection's close is not one)
                elif code == 0x17:  # end
                    self._ended.add(channel)
            kept.append(frame)
        return b"".join(kept)
