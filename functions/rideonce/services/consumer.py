"""Apply one ride event exactly once, in its ride's version order.

Steps: read the projection's version (1 GetItem); decide (pure); apply everything in one
TransactWriteItems. A crash before the transaction leaves nothing behind; a crash after it leaves
the processed key and the advanced projection, so the redelivered message is dropped as a duplicate.
"""

from collections.abc import Callable
from datetime import datetime

from rideonce.dal.consumer import ApplyResult, EffectStore
from rideonce.logic.consumer import OutOfOrderError, Verdict, charge_for, classify
from rideonce.models.consumer import ProcessedKey
from rideonce.models.events import RideEvent
from rideonce.services.rides import utc_now


class RideEventConsumer:
    def __init__(self, store: EffectStore, key_ttl_seconds: int, clock: Callable[[], datetime] = utc_now) -> None:
        self._store = store
        self._key_ttl_seconds = key_ttl_seconds
        self._clock = clock

    def handle(self, event: RideEvent) -> Verdict:
        """APPLY when this call took effect, DUPLICATE when an earlier delivery had; raises when early."""
        verdict = self._decide(event)
        if verdict is not Verdict.APPLY:
            return verdict
        now = self._clock()
        epoch = int(now.timestamp())
        key = ProcessedKey(
            idempotency_key=event.metadata.idempotency_key,
            ride_id=event.data.ride_id,
            version=event.data.version,
            event_type=event.metadata.event_type,
            processed_at=now,
            expires_at=epoch + self._key_ttl_seconds,
        )
        result = self._store.apply(event, key, charge_for(event), epoch)
        if result is ApplyResult.APPLIED:
            return Verdict.APPLY
        if result is ApplyResult.KEY_EXISTS:
            return Verdict.DUPLICATE
        # Another consumer moved the projection between our read and our write: look again.
        verdict = self._decide(event)
        if verdict is Verdict.APPLY:
            raise OutOfOrderError(f"{event.metadata.idempotency_key}: projection changed under us; retrying")
        return verdict

    def _decide(self, event: RideEvent) -> Verdict:
        applied = self._store.applied_version(event.data.ride_id)
        verdict = classify(event.metadata.version, applied)
        if verdict is Verdict.EARLY:
            raise OutOfOrderError(
                f"{event.metadata.idempotency_key} arrived before version {applied + 1} of its ride was applied"
            )
        return verdict
