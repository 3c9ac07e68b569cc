"""Requests answered on a reply link ($cbs put-token, $management READ) are accepted before they are
answered: uamqp's request/response client fails an answer that arrives before its request's
disposition ("Did not receive send confirmation for pending operation"). Sans-I/O: a proton client
engine talks to AmqpConnection in memory."""

from __future__ import annotations

from proton import Connection, Message, Transport

from emulator.amqp.connection import AmqpConnection
from emulator.amqp.frames import split_frames
from emulator.amqp.service_links import ServiceEndpoints
from emulator.hub import Hub
from hubsettings import build_token, wellknown

DISPOSITION, TRANSFER = 0x15, 0x14


def exchange(client: Transport, server: AmqpConnection) -> bytes:
    """Move bytes both ways until both are quiet; what the server sent."""
    sent = []
    for _ in range(50):
        moved = False
        pending = client.pending()
        if pending > 0:
            data = bytes(client.peek(pending))
            client.pop(pending)
            server.receive_data(data)
            moved = True
        answer = server.data_to_send()
        if answer:
            sent.append(answer)
            client.push(answer)
            moved = True
        if not moved:
            break
    return b"".join(sent)


def performatives(data: bytes) -> list[int]:
    frames, _ = split_frames(data)
    codes = []
    for frame in frames:
        if frame[:4] == b"AMQP" or len(frame) <= frame[4] * 4 + 2:
            continue
        body = frame[frame[4] * 4:]
        if body[:2] == b"\x00\x53":
            codes.append(body[2])
    return codes


class Client:
    """A proton client engine on an in-memory AmqpConnection to a fresh hub."""

    def __init__(self):
        self.hub = Hub()
        self.hub.register_well_known()
        self.server = AmqpConnection(ServiceEndpoints(self.hub), "test")
        self.connection, self.transport = Connection(), Transport()
        self.transport.bind(self.connection)
        self.connection.open()
        self.session = self.connection.session()
        self.session.open()
        self.token = build_token(self.hub.host_name, wellknown.POLICIES["iothubowner"][0], policy="iothubowner")

    def links(self, address: str):
        requests = self.session.sender(f"{address}-requests")
        requests.target.address = address
        requests.open()
        replies = self.session.receiver(f"{address}-replies")
        replies.source.address = address
        replies.target.address = f"{address}-client"
        replies.open()
        replies.flow(10)
        self.exchange()
        return requests

    def exchange(self) -> bytes:
        return exchange(self.transport, self.server)

    def request(self, link, message: Message) -> list[int]:
        """Send a request; the performatives the server sent in answer, in order."""
        link.delivery(str(message.id).encode())
        link.send(message.encode())
        link.advance()
        return performatives(self.exchange())


def put_token(client: Client, cbs) -> list[int]:
    return client.request(cbs, Message(id=1, reply_to="$cbs-client", body=client.token, properties={
        "operation": "put-token", "type": "servicebus.windows.net:sastoken", "name": client.hub.host_name}))


def test_a_put_token_is_accepted_before_it_is_answered():
    client = Client()
    codes = put_token(client, client.links("$cbs"))
    assert DISPOSITION in codes and TRANSFER in codes
    assert codes.index(DISPOSITION) < codes.index(TRANSFER)


def test_a_management_request_is_accepted_before_it_is_answered():
    client = Client()
    put_token(client, client.links("$cbs"))
    codes = client.request(client.links("$management"), Message(id=2, reply_to="$management-client", properties={
        "operation": "READ", "name": client.hub.host_name, "type": "com.microsoft:eventhub"}))
    assert DISPOSITION in codes and TRANSFER in codes
    assert codes.index(DISPOSITION) < codes.index(TRANSFER)
