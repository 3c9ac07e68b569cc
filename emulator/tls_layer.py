"""asyncio's TLS layer for the emulator's listeners, with one socket read buffer per event-loop thread
instead of one per connection.

asyncio gives every TLS connection its own zero-filled read buffer (SSLProtocol.max_size, 256 KiB): 10,000
devices held 2.7 GiB in them. Here a connection reads into its thread's buffer and the bytes are copied into
that connection's TLS input at once, in the same call, before anything else runs; so no connection ever
sees another's bytes. Per thread, not per process: two emulators in one process run two loops in two
threads, and a socket read releases the GIL while the kernel fills the buffer.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from asyncio import sslproto

#: The socket read buffer of TLS connections: 64 KiB holds four full TLS records per read.
TLS_READ_BUFFER_BYTES = 64 * 1024

_per_thread = threading.local()


def _thread_buffer() -> memoryview:
    buffer: memoryview | None = getattr(_per_thread, "buffer", None)
    if buffer is None:
        buffer = _per_thread.buffer = memoryview(bytearray(TLS_READ_BUFFER_BYTES))
    return buffer


class SharedBufferTls(sslproto.SSLProtocol):
    """asyncio's own TLS protocol (3.11+), reading into its thread's shared buffer."""

    max_size = TLS_READ_BUFFER_BYTES

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._ssl_buffer_view = _thread_buffer()  # drops the buffer asyncio allocated for this one
        self._ssl_buffer = self._ssl_buffer_view.obj

    def get_buffer(self, n: int) -> memoryview:
        return self._ssl_buffer_view  # built on the loop's thread: that thread's buffer


async def start_tls_server(transport: asyncio.Transport, protocol: asyncio.BaseProtocol,
                           context: ssl.SSLContext, *, handshake_timeout: float,
                           first_bytes: bytes = b"") -> asyncio.Transport:
    """loop.start_tls(server_side=True) with SharedBufferTls; `first_bytes`: what was read from the
    transport before (the client's hello), handed to the TLS layer first. The transport's reading must
    be paused; the app protocol's connection_made is left to the caller. Raises what start_tls raises."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    tls = SharedBufferTls(loop, protocol, context, waiter, server_side=True, call_connection_made=False,
                          ssl_handshake_timeout=handshake_timeout)
    transport.set_protocol(tls)
    tls.connection_made(transport)  # starts the handshake: it waits for the hello
    if first_bytes:
        view = memoryview(first_bytes)
        while view:
            buffer = tls.get_buffer(len(view))
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            tls.buffer_updated(n)
            view = view[n:]
    transport.resume_reading()
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    return tls._app_transport
