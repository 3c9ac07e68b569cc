"""Claims-based security: the `$cbs` node where a client puts its SAS token before opening links.

The client (uamqp, rhea) opens a sender link to `$cbs` and a receiver link from it, then sends a
put-token request: application properties `operation=put-token`, `type`, `name` (the audience), body
the token. The answer goes back on the receiver link, correlated by message id, with `status-code`
200 or 401 and a `status-description`. A connection may use the service endpoints once it has put a
token that the hub accepts with the ServiceConnect right (or authenticated with SASL PLAIN).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from proton import Delivery, Link, Message, int32

from ..hub import Hub, HubError
from .connection import AmqpConnection, InboundNode, Outcome, Refused

log = logging.getLogger("emulator.amqp")

SERVICE_CONNECT = "ServiceConnect"
TOKEN_TYPES = ("servicebus.windows.net:sastoken", "azure-devices.net:sastoken")


@dataclass
class Grants:
    """What one connection has proved: the latest accepted token (re-checked on every use, so its
    expiry and the policy's current rights apply), and the `$cbs` reply link."""

    token: str | None = None
    reply_link: Link | None = None
    pending_replies: list[Message] = field(default_factory=list)


def grants_of(connection: AmqpConnection) -> Grants:
    if connection.grants is None:
        connection.grants = Grants()
        identity = connection.identity
        if identity is not None and identity.mechanism == "PLAIN":
            connection.grants.token = identity.password
    return connection.grants


def require_service_connect(hub: Hub, connection: AmqpConnection) -> str:
    """The policy name, or Refused(amqp:unauthorized-access) with the reason."""
    token = grants_of(connection).token
    if token is None:
        raise Refused("amqp:unauthorized-access",
                      "no token: put a SAS token on $cbs (or use SASL PLAIN) before opening this link")
    try:
        return hub.authenticate_service(token, SERVICE_CONNECT)
    except HubError as e:
        raise Refused("amqp:unauthorized-access", e.message) from None


class CbsRequests(InboundNode):
    """The client's sender link to `$cbs` (our receiver): put-token requests."""

    def __init__(self, hub: Hub, connection: AmqpConnection):
        self._hub = hub
        self._connection = connection

    def on_message(self, message: Message) -> Outcome:
        properties = message.properties or {}
        status, description = self._put_token(properties, message.body)
        reply = Message(correlation_id=message.id, address=message.reply_to,
                        properties={"status-code": int32(status), "status-description": description})
        grants = grants_of(self._connection)
        grants.pending_replies.append(reply)
        self._connection.defer(lambda: _send_replies(self._connection, grants))
        return Outcome.accepted()

    def _put_token(self, properties: dict, body: object) -> tuple[int, str]:
        if properties.get("operation") != "put-token":
            return 400, f"unsupported $cbs operation {str(properties.get('operation'))[:40]!r}; only put-token"
        if str(properties.get("type")) not in TOKEN_TYPES:
            return 400, f"unsupported token type {str(properties.get('type'))[:60]!r}; send a SAS token"
        token = body.decode("utf-8", "replace") if isinstance(body, (bytes, memoryview)) else body
        if isinstance(token, memoryview):
            token = bytes(token).decode("utf-8", "replace")
        if not isinstance(token, str):
            return 400, "the put-token body must be the token string"
        try:
            policy = self._hub.authenticate_service(token, SERVICE_CONNECT)
        except HubError as e:
            log.info("%s: $cbs put-token refused: %s", self._connection.peer, e.message)
            return 401, e.message
        grants_of(self._connection).token = token
        log.debug("%s: $cbs put-token accepted for policy %s", self._connection.peer, policy)
        return 200, "OK"


class CbsReplies:
    """The client's receiver link from `$cbs` (our sender): put-token answers."""

    def __init__(self, connection: AmqpConnection, link: Link):
        self._connection = connection
        grants_of(connection).reply_link = link

    def on_message(self, message: Message) -> Outcome:
        raise Refused("amqp:not-allowed", "$cbs replies are sent by the hub")

    def on_credit(self) -> None:
        _send_replies(self._connection, grants_of(self._connection))

    def on_settled(self, delivery: Delivery) -> None:
        delivery.settle()

    def on_closed(self) -> None:
        grants_of(self._connection).reply_link = None


def _send_replies(connection: AmqpConnection, grants: Grants) -> None:
    link = grants.reply_link
    while link is not None and grants.pending_replies and link.credit > 0:
        connection.send(link, grants.pending_replies.pop(0), settled=True)
