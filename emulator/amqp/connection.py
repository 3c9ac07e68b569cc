"""One AMQP 1.0 connection, sans-I/O: our SASL layer, then proton's engine (Connection + Transport).

`receive_data(bytes)` feeds it, `data_to_send()` drains it, `tick(now)` drives idle timeouts; no
sockets, no threads, so it runs on the emulator's event loop next to the hub it calls (the asyncio
listener is in server.py). Proton decodes frames and keeps link, session and delivery state; this
module turns proton's events into calls on an `Endpoints` object (which decides what each link
address means) and on the `LinkHandler` it returns for each link.
"""

from __future__ import annotations

import itertools
import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from proton import Collector, Condition, Connection, Delivery, Event, Link, Message, Transport

from .frames import EndedChannelFilter, FramePadder
from .sasl import SaslError, SaslIdentity, SaslServer

log = logging.getLogger("emulator.amqp")

#: Bytes a single incoming delivery may grow to before it is refused (a C2D message is at most 64 KB;
#: this guards memory, the 64 KB rule itself gives IoT Hub's own error).
MAX_DELIVERY_BYTES = 1024 * 1024
CONTAINER_ID = "iothub-emulator"
LINK_CREDIT = 50  # messages a client may send on a link before we grant more


@dataclass(frozen=True)
class Outcome:
    """How an incoming message is settled: accepted, or rejected with an AMQP error condition."""

    condition: str | None = None  # None: accepted
    description: str = ""

    @classmethod
    def accepted(cls) -> Outcome:
        return cls()


class Refused(Exception):
    """An attach (or a message) the endpoints refuse: an AMQP error condition and a description."""

    def __init__(self, condition: str, description: str, info: dict | None = None):
        super().__init__(description)
        self.condition = condition
        self.description = description
        self.info = info  # the error's info map (a redirect's host and address)


class LinkHandler(Protocol):
    def on_message(self, message: Message) -> Outcome: ...
    def on_credit(self) -> None: ...
    def on_settled(self, delivery: Delivery) -> None: ...
    def on_closed(self) -> None: ...


class InboundNode:
    """A LinkHandler for a node clients send to (our receiver link): only `on_message` matters."""

    def on_message(self, message: Message) -> Outcome:
        raise NotImplementedError

    def on_credit(self) -> None:
        pass

    def on_settled(self, delivery: Delivery) -> None:
        pass

    def on_closed(self) -> None:
        pass


class Endpoints(Protocol):
    """What the service side offers on a connection: decides each link by its address."""

    def attach(self, connection: AmqpConnection, link: Link, address: str) -> LinkHandler:
        """A handler for the link, or raise Refused."""

    def check_plain(self, username: str, password: str) -> str | None:
        """SASL PLAIN credentials: None to accept, else the reason to refuse."""


def link_path(address: str | None) -> str:
    """`amqps://host/messages/devicebound` and `/messages/devicebound` -> `/messages/devicebound`.
    Lower-cased: IoT Hub's node names are case-insensitive (Node's SDK asks for `serviceBound`)."""
    address = address or ""
    if "://" in address:
        address = urllib.parse.urlsplit(address).path
    return "/" + address.lstrip("/").lower()


class AmqpConnection:
    """A connection's state machine. `identity` is the SASL outcome."""

    def __init__(self, endpoints: Endpoints, peer: str):
        self.peer = peer
        self._endpoints = endpoints
        self._sasl = SaslServer(endpoints.check_plain)
        self._transport = Transport(Transport.SERVER)
        self._connection = Connection()
        self._collector = Collector()
        self._connection.collect(self._collector)
        self._transport.bind(self._connection)
        self._padder = FramePadder()  # full performatives, which azure-eventhub's pyamqp needs
        self._incoming = EndedChannelFilter()
        self._handlers: dict[Link, LinkHandler] = {}
        self._tags = itertools.count(1)
        self._closed = False
        self._processing = False
        self.close_reason: str | None = None
        self.grants: Any = None  # the endpoints' record of what this connection proved (tokens)
        self.wake: Callable[[], None] = lambda: None  # the listener sets it: write out data_to_send()
        # The same, once the current burst of hub events is over (many appends, one write).
        self.wake_soon: Callable[[], None] = lambda: (self._process(), self.wake())
        # The socket's write buffer is full (the peer reads slower than we send): sender links that
        # push on their own (partition readers) wait for resume() instead of filling memory.
        self.paused = False
        self._deferred: list[Callable[[], None]] = []

    @property
    def identity(self) -> SaslIdentity | None:
        return self._sasl.identity

    @property
    def closed(self) -> bool:
        """Nothing more will be read; write out data_to_send() one last time, then close the socket."""
        return self._closed

    # ---- bytes in, bytes out ---------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        if self._closed:
            return
        if not self._sasl.done:
            try:
                self._sasl.receive_data(data)
            except SaslError as e:
                self._fail(str(e))
                return
            if self._sasl.failed:
                self._fail(f"SASL authentication failed: {self._sasl.refusal}")
                return
            if not self._sasl.done:
                return
            data = self._sasl.leftover
        self._push(data)

    def _push(self, data: bytes) -> None:
        data = self._incoming.feed(data)
        while data and not self._closed:
            capacity = self._transport.capacity()
            if capacity < 0:
                self._fail("the AMQP transport closed its input")
                return
            chunk, data = data[:max(capacity, 1)], data[max(capacity, 1):]
            try:
                self._transport.push(chunk)
            except Exception as e:  # noqa: BLE001 - proton raises TransportException on bad frames
                self._fail(f"bad AMQP input: {e}")
                return
            self._process()
        self._process()

    def data_to_send(self) -> bytes:
        out = self._sasl.data_to_send()
        if not self._sasl.done:
            return out
        chunks = [out]
        while True:
            pending = self._transport.pending()
            if pending <= 0:
                break
            chunks.append(self._padder.feed(bytes(self._transport.peek(pending))))
            self._transport.pop(pending)
        if self._transport.closed or self._transport.capacity() < 0:
            # Both ends done, or proton stopped reading (the peer closed, or sent a frame it could not
            # take): what it had to say is in `chunks`; nothing more will come of this connection.
            if not self._closed and self.close_reason is None and not self._transport.closed:
                condition = self._transport.condition
                self.close_reason = (f"{condition.name}: {condition.description}" if condition
                                     else "the client's AMQP input cannot be read (malformed frame?)")
            self._closed = True
        return b"".join(chunks)

    def tick(self, now: float) -> float:
        """Idle-timeout housekeeping (heartbeats out, a silent peer closed); the next deadline or 0."""
        if not self._sasl.done or self._closed:
            return 0.0
        deadline = self._transport.tick(now)
        self._process()
        return deadline

    def connection_lost(self) -> None:
        if not self._closed:
            self._closed = True
            for handler in list(self._handlers.values()):
                handler.on_closed()
            self._handlers.clear()

    def _fail(self, reason: str) -> None:
        self.close_reason = reason
        if self._sasl.done:
            condition = self._transport.condition
            if condition is not None:
                reason = f"{reason} ({condition.name}: {condition.description})"
                self.close_reason = reason
            self._transport.close_tail()
            self._process()
            # Proton wrote its close frame (with the error) to the output; the caller sends it, then closes.
        self.connection_lost()

    # ---- proton events ---------------------------------------------------------------------------
    def _process(self) -> None:
        if self._processing:  # a handler's hub call woke this connection again: the loop below continues
            return
        self._processing = True
        collector = self._collector
        try:
            while (event := collector.peek()) is not None:
                try:
                    self._dispatch(event)
                finally:
                    collector.pop()
        finally:
            self._processing = False

    def _dispatch(self, event: Event) -> None:
        kind = event.type
        if kind == Event.CONNECTION_REMOTE_OPEN:
            self._connection.container = CONTAINER_ID
            self._connection.open()
        elif kind == Event.SESSION_REMOTE_OPEN:
            event.session.open()
        elif kind == Event.LINK_REMOTE_OPEN:
            self._attach(event.link)
        elif kind == Event.DELIVERY:
            self._delivery(event.delivery)
        elif kind == Event.LINK_FLOW:
            handler = self._handlers.get(event.link)
            if handler is not None and event.link.is_sender:
                handler.on_credit()
        elif kind == Event.LINK_REMOTE_CLOSE:
            self._detached(event.link)
            event.link.close()
        elif kind == Event.SESSION_REMOTE_CLOSE:
            event.session.close()
        elif kind == Event.CONNECTION_REMOTE_CLOSE:
            self._connection.close()
        elif kind == Event.TRANSPORT_ERROR:
            condition = self._transport.condition
            self.close_reason = f"{condition.name}: {condition.description}" if condition else "transport error"

    def _attach(self, link: Link) -> None:
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        address = link.remote_target.address if link.is_receiver else link.remote_source.address
        try:
            handler = self._endpoints.attach(self, link, link_path(address))
        except Refused as refused:
            log.info("%s: refused a link to '%s': %s (%s)", self.peer, (address or "")[:200],
                     refused.description, refused.condition)
            link.open()
            link.condition = Condition(refused.condition, refused.description, refused.info)
            link.close()
            return
        self._handlers[link] = handler
        link.open()
        if link.is_receiver:
            link.flow(LINK_CREDIT)

    def _detached(self, link: Link) -> None:
        handler = self._handlers.pop(link, None)
        if handler is not None:
            handler.on_closed()

    def _delivery(self, delivery: Delivery) -> None:
        link = delivery.link
        handler = self._handlers.get(link)
        if link.is_sender:
            if handler is not None and delivery.updated and (delivery.remote_state or delivery.settled):
                handler.on_settled(delivery)
            return
        if not delivery.readable:
            return
        if delivery.partial:
            if delivery.pending > MAX_DELIVERY_BYTES:
                self._refuse_link(link, "amqp:link:message-size-exceeded",
                                  f"a message larger than {MAX_DELIVERY_BYTES} bytes")
            return
        data = link.recv(delivery.pending)
        link.advance()
        outcome = self._outcome(handler, data)
        if outcome.condition is None:
            delivery.update(Delivery.ACCEPTED)
        else:
            delivery.local.condition = Condition(outcome.condition, outcome.description)
            delivery.update(Delivery.REJECTED)
        delivery.settle()
        if link.credit < LINK_CREDIT // 2:
            link.flow(LINK_CREDIT - link.credit)
        if self._deferred:
            # Encode the request's disposition before the answers: uamqp's request/response client
            # ($cbs, $management) fails an answer that arrives before it saw its request accepted.
            self._transport.pending()
            actions, self._deferred = self._deferred, []
            for action in actions:
                action()

    def _outcome(self, handler: LinkHandler | None, data: bytes | None) -> Outcome:
        if handler is None:
            return Outcome("amqp:illegal-state", "the link is closed")
        message = Message()
        try:
            message.decode(data or b"")
        except Exception as e:  # noqa: BLE001 - proton's codec raises several kinds
            return Outcome("amqp:decode-error", f"the message cannot be decoded: {e}")
        try:
            return handler.on_message(message)
        except Refused as refused:
            return Outcome(refused.condition, refused.description)

    def _refuse_link(self, link: Link, condition: str, description: str) -> None:
        log.info("%s: closing link '%s': %s", self.peer, link.name, description)
        self._detached(link)
        link.condition = Condition(condition, description)
        link.close()

    # ---- for handlers ----------------------------------------------------------------------------
    def send(self, link: Link, message: Message, *, settled: bool = False) -> Delivery:
        """Send a message on one of our sender links (the caller checked its credit)."""
        delivery = link.delivery(str(next(self._tags)).encode())
        link.send(message.encode())
        link.advance()
        if settled:
            delivery.settle()
        return delivery

    def defer(self, action: Callable[[], None]) -> None:
        """Run `action` once the message being handled is settled (to answer a request after it)."""
        self._deferred.append(action)

    def resume(self) -> None:
        """The write buffer drained: let our sender links send again."""
        self.paused = False
        for link, handler in list(self._handlers.items()):
            if link.is_sender:
                handler.on_credit()
        self._process()
        self.wake()

    def process(self) -> None:
        """Run proton's pending events after a handler changed state outside an event (hub pushes)."""
        self._process()
