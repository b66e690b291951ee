"""The identity of a ride change, (rideId, version): every hop that sees the change again derives the same key.

A module of its own, free of the domain's other imports, because the enrichment needs it at cold start.
"""

import uuid
from dataclasses import dataclass

# Fixed forever: changing it would give every past event a new id.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c2d1e-52a4-4d8e-9d59-0b4f3c6a7e21")


@dataclass(frozen=True)
class EventIdentity:
    event_id: str
    idempotency_key: str


def event_identity(ride_id: str, version: int) -> EventIdentity:
    """The identity of the change (rideId, version): every hop that sees it again derives the same key."""
    key = f"ride#{ride_id}#v{version}"
    return EventIdentity(event_id=str(uuid.uuid5(EVENT_ID_NAMESPACE, key)), idempotency_key=key)
