"""Apply one ride event exactly once, in its ride's version order, in one request.

Steps: build the processed-key record; apply everything in one TransactWriteItems (the record, the
projection conditioned on the predecessor's version, the charge); when DynamoDB cancels it, classify
the event from what the cancellation says (pure). A crash before the transaction leaves nothing
behind; a crash after it leaves the processed key and the advanced projection, so the redelivered
message is dropped as a duplicate, by that same one request.
"""

from collections.abc import Callable
from datetime import datetime

from rideonce.dal.consumer import ApplyResult, EffectStore
from rideonce.logic.consumer import OutOfOrderError, Verdict, charge_for, classify, processed_key
from rideonce.models.events import RideEvent
from rideonce.services.clock import utc_now


class RideEventConsumer:
    def __init__(self, store: EffectStore, key_ttl_seconds: int, clock: Callable[[], datetime] = utc_now) -> None:
        self._store = store
        self._key_ttl_seconds = key_ttl_seconds
        self._clock = clock

    def handle(self, event: RideEvent) -> Verdict:
        """APPLY when this call took effect, DUPLICATE when an earlier delivery had; raises when early."""
        now = self._clock()
        epoch = int(now.timestamp())
        key = processed_key(event, now, self._key_ttl_seconds)
        applied = self._store.apply(event, key, charge_for(event), epoch)
        if applied.result is ApplyResult.APPLIED:
            return Verdict.APPLY
        if applied.result is ApplyResult.KEY_EXISTS:
            return Verdict.DUPLICATE
        if applied.result is ApplyResult.CONFLICT:
            raise OutOfOrderError(f"{event.metadata.idempotency_key}: another transaction held its items; retrying")
        current = applied.projection_version or 0
        verdict = classify(event.metadata.version, current)
        if verdict is Verdict.DUPLICATE:
            # At or below the projection: applied before, even if its key has expired since (a late replay).
            return verdict
        # EARLY; APPLY cannot come back from a failed condition "still at version n - 1", so it is early too.
        raise OutOfOrderError(
            f"{event.metadata.idempotency_key} arrived before version {current + 1} of its ride was applied"
        )
