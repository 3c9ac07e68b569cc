"""DPS over MQTT: a registration client's CONNECT auth and the `$dps/registrations/...` topics ->
hub provisioning calls.

DeviceFront (device_front.py) owns the connections and persistent sessions of every client and decides,
by the username's shape, which CONNECTs are DPS registration clients; it hands their auth and their
messages to the DpsFront it holds.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from hubsettings.sas import SasError, SasToken, parse_token

from ..hub import Hub, HubError
from .front_common import ClientConnection, RefusedConnect, Violation, parse_json, parse_topic_query
from mqttcodec.packets import CONNACK_IDENTIFIER_REJECTED
from .session import MessageReceived

log = logging.getLogger("emulator.mqtt")

DPS_REGISTER = "$dps/registrations/PUT/iotdps-register/"
DPS_OPERATION_STATUS = "$dps/registrations/GET/iotdps-get-operationstatus/"
MAX_DPS_OPERATIONS = 1000  # answered operation-status polls are kept for the latest registrations


@dataclass(frozen=True)
class DpsIdentity:
    id_scope: str
    registration_id: str
    token: SasToken


def parse_dps_username(username: str) -> tuple[str, str] | None:
    """`{idScope}/registrations/{registrationId}/api-version=...` -> (scope, registration id)."""
    parts = username.split("/")
    if len(parts) >= 3 and parts[1] == "registrations" and parts[0] and parts[2]:
        return parts[0], parts[2]
    return None


def dps_subscription_allowed(topic_filter: str) -> bool:
    """A DPS client may subscribe to `$dps/...` only."""
    return topic_filter.startswith("$dps/")


class DpsFront:
    """The DPS registration protocol; remembers the latest operations for operation-status polls."""

    def __init__(self, hub: Hub):
        self.hub = hub
        self._operations: OrderedDict[str, dict[str, Any]] = OrderedDict()  # the latest, by operation id

    def authenticate(self, client_id: str, scope: str, registration_id: str, password: str) -> DpsIdentity:
        """A CONNECT whose username is `{scope}/registrations/{registration_id}/...`; RefusedConnect."""
        if client_id != registration_id:
            raise RefusedConnect("the client id differs from the registration id", CONNACK_IDENTIFIER_REJECTED,
                                 hint="use the registration id as the MQTT client id")
        try:
            token = parse_token(password)
            self.hub.provisioning.attest(scope, registration_id, token, self.hub.now())
        except (SasError, HubError) as e:
            raise RefusedConnect(str(e), hint=f"the password must be a SAS token with sr={scope}/registrations/"
                                 f"{registration_id}, signed with the enrollment's key (for a group enrollment, the "
                                 "device key derived from the group key)") from None
        return DpsIdentity(scope, registration_id, token)

    def on_message(self, client: ClientConnection, identity: DpsIdentity, event: MessageReceived) -> None:
        """A DPS request; raises Violation when the client should be dropped."""
        path, query = parse_topic_query(event.topic)
        rid = query.get("$rid")
        if not rid:
            raise Violation(f"DPS request without $rid: '{event.topic[:200]}'")
        if path.startswith(DPS_REGISTER):
            status, body = self._register(identity, event.payload)
        elif path.startswith(DPS_OPERATION_STATUS):
            operation = self._operations.get(query.get("operationId", ""))
            status, body = (200, operation) if operation else (404, _dps_error(404201, "Unknown operation"))
        else:
            raise Violation(f"DPS client published to '{event.topic[:200]}'")
        client.connection.publish(f"$dps/registrations/res/{status}/?$rid={rid}",
                                json.dumps(body).encode("utf-8"), qos=1)

    def _register(self, identity: DpsIdentity, payload: bytes) -> tuple[int, dict[str, Any]]:
        try:
            request = parse_json(payload) or {}
        except ValueError:
            return 400, _dps_error(400004, "The registration request is not JSON")
        registration_id = request.get("registrationId", identity.registration_id) if isinstance(request, dict) else None
        if registration_id != identity.registration_id:
            return 400, _dps_error(400004, "registrationId does not match the connection's registration")
        try:
            state = self.hub.register_device(identity.id_scope, identity.registration_id, identity.token)
        except HubError as e:
            log.info("DPS registration %s refused: %s", identity.registration_id, e.message)
            return e.http_status, _dps_error(e.error_code, e.message)
        operation_id = f"4.{uuid.uuid4().hex[:16]}.{uuid.uuid4()}"
        result = {"operationId": operation_id, "status": "assigned", "registrationState": state.to_json()}
        self._operations[operation_id] = result
        while len(self._operations) > MAX_DPS_OPERATIONS:
            self._operations.popitem(last=False)
        log.info("DPS registration %s assigned device %s to %s", identity.registration_id, state.device_id,
                 state.assigned_hub)
        return 200, result


def _dps_error(code: int, message: str) -> dict[str, Any]:
    return {"errorCode": code, "trackingId": str(uuid.uuid4()), "message": message,
            "timestampUtc": ""}
