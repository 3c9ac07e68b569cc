"""DPS enrollments (symmetric keys): the well-known group enrollment and optional individual ones.

A device proves itself with a SAS token whose sr is `{idScope}/registrations/{registrationId}`, signed
with its individual enrollment key or with the key derived from a group key for its registration id.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from hubsettings.sas import SasToken, derive_device_key

from .clock import iso_timestamp
from .errors import ArgumentInvalid, IotHubUnauthorizedAccess
from .registry import validate_device_id

REGISTRATION_ID_PATTERN = re.compile(r"^[A-Za-z0-9\-._:]{1,128}$")


@dataclass
class GroupEnrollment:
    enrollment_group_id: str
    primary_key: str
    secondary_key: str | None = None

    def device_keys(self, registration_id: str) -> list[str]:
        keys = [derive_device_key(self.primary_key, registration_id)]
        if self.secondary_key:
            keys.append(derive_device_key(self.secondary_key, registration_id))
        return keys


@dataclass
class IndividualEnrollment:
    registration_id: str
    primary_key: str
    secondary_key: str | None = None
    device_id: str | None = None  # defaults to the registration id

    def device_keys(self, registration_id: str) -> list[str]:
        return [k for k in (self.primary_key, self.secondary_key) if k]

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Attestation:
    """Who a verified registration request came from: the device id and the keys it may use."""

    registration_id: str
    device_id: str
    device_keys: list[str]
    matched_key: str
    enrollment: str


class Provisioning:
    def __init__(self, id_scope: str):
        self.id_scope = id_scope
        self.groups: dict[str, GroupEnrollment] = {}
        self.individuals: dict[str, IndividualEnrollment] = {}

    def add_group(self, enrollment: GroupEnrollment) -> None:
        self.groups[enrollment.enrollment_group_id] = enrollment

    def add_individual(self, enrollment: IndividualEnrollment) -> None:
        validate_device_id(enrollment.device_id or enrollment.registration_id)
        self.individuals[enrollment.registration_id] = enrollment

    def attest(self, id_scope: str, registration_id: str, token: SasToken, now: float) -> Attestation:
        """Check scope, sr, expiry and signature; an individual enrollment wins over the groups."""
        if id_scope != self.id_scope:
            raise IotHubUnauthorizedAccess(f"Unknown id scope '{id_scope}'")
        if not REGISTRATION_ID_PATTERN.match(registration_id or ""):
            raise ArgumentInvalid(f"Registration id '{(registration_id or '')[:130]}' is invalid: up to 128 "
                                  "letters, digits and - . _ :")
        if token.resource_uri != f"{id_scope}/registrations/{registration_id}":
            raise IotHubUnauthorizedAccess("The token's resource does not name this registration")
        if token.is_expired(now):
            raise IotHubUnauthorizedAccess("The token has expired")
        individual = self.individuals.get(registration_id)
        candidates: list[tuple[str, list[str], str]] = []
        if individual:
            candidates.append((individual.device_id or registration_id, individual.device_keys(registration_id),
                               f"individual:{registration_id}"))
        else:
            for group in self.groups.values():
                candidates.append((registration_id, group.device_keys(registration_id),
                                   f"group:{group.enrollment_group_id}"))
        for device_id, keys, enrollment in candidates:
            for key in keys:
                if token.signature_matches(key):
                    return Attestation(registration_id, device_id, keys, key, enrollment)
        raise IotHubUnauthorizedAccess("The registration's signature does not match any enrollment")


@dataclass(frozen=True)
class RegistrationState:
    registration_id: str
    device_id: str
    assigned_hub: str
    created: float
    updated: float
    etag: str

    def to_json(self) -> dict[str, Any]:
        return {"registrationId": self.registration_id, "assignedHub": self.assigned_hub,
                "deviceId": self.device_id, "status": "assigned", "substatus": "initialAssignment",
                "createdDateTimeUtc": iso_timestamp(self.created),
                "lastUpdatedDateTimeUtc": iso_timestamp(self.updated), "etag": self.etag}

    def to_record(self) -> dict[str, Any]:
        return asdict(self)
