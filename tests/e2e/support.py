"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Iterator


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll until predicate() is truthy (returns it) or fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def unique_device_id(prefix: str = "e2e") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class PortMappingProxy:
    """An HTTP CONNECT proxy on 127.0.0.1 that sends every tunnel for port `from_port` to `to_address:to_port`
    (the emulator's fallback port), so a client that always dials 443 (MQTT over WebSockets) reaches an
    emulator that could not bind 443. `targets` records what the clients asked for."""

    def __init__(self, from_port: int, to_address: str, to_port: int):
        import socket
        import threading
        self._mapping = (from_port, to_address, to_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.targets: list[str] = []
        self._threading = threading
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client) -> None:
        import socket
        from_port, to_address, to_port = self._mapping
        with client:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = client.recv(4096)
                if not chunk:
                    return
                request += chunk
            verb, target = request.split(b" ", 2)[:2]
            self.targets.append(target.decode())
            port = int(target.rsplit(b":", 1)[1])
            if verb != b"CONNECT" or port != from_port:
                client.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                return
            with socket.create_connection((to_address, to_port), timeout=30) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                upstream.settimeout(None)
                client.settimeout(None)
                pump = self._threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
                pump.start()
                _pipe(client, upstream)
                pump.join(5)

    def close(self) -> None:
        self._listener.close()


def _pipe(source, sink) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(1)  # SHUT_WR: the other direction may still be sending
        except OSError:
            pass


@contextlib.contextmanager
def something_listening_on(address: str, port: int) -> Iterator[None]:
    """Another program's listener on address:port, bound as the emulator binds (SO_REUSEADDR: a TIME_WAIT
    socket left there by an earlier test does not count, a listener does)."""
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((address, port))
        squatter.listen()
        yield
