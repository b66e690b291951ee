"""The ride API's use cases: claim the Idempotency-Key, run the domain, commit everything in one transaction.

This is the only place that knows the order of those steps, and why it is safe:

1. claim the key (a conditional put, IN_PROGRESS with a lock that expires after the function timeout);
2. read the ride and compute the change (pure domain code);
3. one TransactWriteItems: the ride (version condition), the outbox record (attribute_not_exists) and
   the key's COMPLETED record with the response (condition: we still hold the lock).

A crash before 3 commits nothing and the lock expires; a crash after 3 leaves a COMPLETED key whose
stored response the retry replays. No point in between can apply a change twice or lose it.
"""

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from rideonce.dal.idempotency import IdempotencyStore
from rideonce.dal.rides import CommitConflictError, RideStore
from rideonce.logic import idempotency, rides
from rideonce.logic.errors import ConcurrentChangeError, DomainError, RequestInFlightError, RideNotFoundError
from rideonce.logic.events import outbox_record
from rideonce.models.idempotency import IdempotencyRecord, KeyStatus, StoredResponse
from rideonce.models.requests import CreateRideRequest
from rideonce.models.ride import Ride
from rideonce.services.clock import utc_now
from rideonce.settings import ApiSettings

Transition = Callable[[Ride, datetime, int | None], rides.Change]
"""A lifecycle step: the ride as stored, the time of the change, the version `If-Match` named."""


@dataclass(frozen=True)
class WriteRequest:
    """What every write carries besides its body: who asks, under which key, for what, in which trace."""

    caller: str
    idempotency_key: str
    fingerprint: str
    traceparent: str


@dataclass(frozen=True)
class Outcome:
    response: StoredResponse
    replayed: bool


def new_id() -> str:
    return str(uuid.uuid4())


class RideService:
    def __init__(
        self,
        rides_store: RideStore,
        keys: IdempotencyStore,
        settings: ApiSettings,
        clock: Callable[[], datetime] = utc_now,
        make_id: Callable[[], str] = new_id,
    ) -> None:
        self._rides = rides_store
        self._keys = keys
        self._settings = settings
        self._clock = clock
        self._make_id = make_id

    def get(self, ride_id: str) -> Ride:
        ride = self._rides.get(ride_id)
        if ride is None:
            raise RideNotFoundError(f"no ride {ride_id}")
        return ride

    def create(self, request: WriteRequest, body: CreateRideRequest) -> Outcome:
        ride_id = self._make_id()
        return self._execute(request, lambda now: rides.request_ride(ride_id, body, now), created=True)

    def transition(
        self,
        request: WriteRequest,
        ride_id: str,
        if_match: str | None,
        apply: Transition,
    ) -> Outcome:
        expected = rides.parse_if_match(if_match)
        return self._execute(request, lambda now: apply(self.get(ride_id), now, expected), created=False)

    def _execute(self, request: WriteRequest, command: Callable[[datetime], rides.Change], created: bool) -> Outcome:
        now = self._clock()
        epoch = int(now.timestamp())
        scope = idempotency.scope(request.caller, request.idempotency_key)
        token = self._make_id()
        holder = self._keys.claim(
            IdempotencyRecord(
                scope=scope,
                status=KeyStatus.IN_PROGRESS,
                fingerprint=request.fingerprint,
                token=token,
                lock_expires_at=epoch + self._settings.idempotency_lock_seconds,
                expires_at=epoch + self._settings.idempotency_key_ttl_seconds,
            ),
            now=epoch,
        )
        if holder is not None:
            return Outcome(idempotency.decide(holder, request.fingerprint, epoch).response, replayed=True)
        try:
            change = command(now)
            response = self._respond(change.ride, created)
            record = outbox_record(
                change, now, request.traceparent, timedelta(seconds=self._settings.outbox_retention_seconds)
            )
            completion = self._keys.completion(
                scope, token, response, epoch + self._settings.idempotency_key_ttl_seconds
            )
            self._rides.commit(change, record, also={"idempotency": completion})
        except DomainError:
            self._keys.release(scope, token)
            raise
        except CommitConflictError as conflict:
            if conflict.failed == {"idempotency"}:
                # Our lock expired and a retry took the key over: that retry owns the outcome now.
                raise RequestInFlightError(
                    "this request outlived its Idempotency-Key lock and a retry took it over; retry to get "
                    "that request's response",
                    retry_after_seconds=1,
                ) from conflict
            self._keys.release(scope, token)
            raise ConcurrentChangeError(
                "the ride changed while this request was being processed: GET it again and retry"
            ) from conflict
        except Exception:
            # Our own failure (a bug, DynamoDB unavailable): nothing runs under this key any more, so a retry
            # must be judged afresh, not told 409 or 422 until the lock expires. If the commit did land, the
            # key is COMPLETED and the release's condition leaves it alone.
            self._release_after_failure(scope, token)
            raise
        return Outcome(response, replayed=False)

    def _release_after_failure(self, scope: str, token: str) -> None:
        """Release without hiding the original error: if this fails too, the lock's expiry frees the key."""
        with contextlib.suppress(Exception):
            self._keys.release(scope, token)

    @staticmethod
    def _respond(ride: Ride, created: bool) -> StoredResponse:
        headers = {"Content-Type": "application/json", "ETag": rides.etag(ride.version)}
        if created:
            headers["Location"] = f"/rides/{ride.ride_id}"
        return StoredResponse(status_code=201 if created else 200, body=ride.model_dump_json(), headers=headers)
