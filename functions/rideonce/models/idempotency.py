"""What the ride API stores per Idempotency-Key: the request's fingerprint and, once done, its response."""

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from rideonce.models.base import CamelModel


class KeyStatus(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"


class StoredResponse(CamelModel):
    status_code: int
    body: str
    headers: dict[str, str] = Field(default_factory=dict)


class IdempotencyRecord(CamelModel):
    """Keyed by `scope` (caller + key). `lock_expires_at` frees a key whose request died mid-way."""

    scope: str
    status: KeyStatus
    fingerprint: str
    token: str
    lock_expires_at: Annotated[int, Field(description="Epoch seconds; a later request may take over after it.")]
    expires_at: Annotated[int, Field(description="Epoch seconds; the table's TTL attribute.")]
    response: StoredResponse | None = None
