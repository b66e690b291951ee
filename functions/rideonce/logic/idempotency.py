"""Idempotency-Key semantics (IETF httpapi draft), as pure decisions over the stored record.

Why not Powertools idempotency here: it completes its record in a write of its own after the handler
returns, so an API function that dies between the ride's commit and that write leaves the key
IN_PROGRESS; once the lock expires the retry runs the command again and creates a second ride. Here
the COMPLETED record is one more item of the ride's own TransactWriteItems (see service.py), so the
change and its stored response commit together or not at all.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from rideonce.logic.errors import IdempotencyKeyReusedError, RequestInFlightError
from rideonce.models.idempotency import IdempotencyRecord, KeyStatus, StoredResponse


def scope(caller: str, key: str) -> str:
    """Keys are scoped to the caller: two callers may use the same key without colliding."""
    return f"{caller}|{key}"


def fingerprint(method: str, path: str, body: Any) -> str:
    """A digest of what the request asks for; JSON key order and whitespace do not change it."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method.upper()} {path}\n{canonical}".encode()).hexdigest()


@dataclass(frozen=True)
class Replay:
    response: StoredResponse


def decide(existing: IdempotencyRecord, request_fingerprint: str, now: int) -> Replay:
    """What to answer when the key is already held by a live record (the claim failed)."""
    if existing.fingerprint != request_fingerprint:
        raise IdempotencyKeyReusedError(
            "this Idempotency-Key was already used for a different request; use a new key for a new request"
        )
    if existing.status is KeyStatus.IN_PROGRESS or existing.response is None:
        raise RequestInFlightError(
            "a request with this Idempotency-Key is still being processed; retry after a moment",
            retry_after_seconds=max(1, existing.lock_expires_at - now),
        )
    return Replay(existing.response)
