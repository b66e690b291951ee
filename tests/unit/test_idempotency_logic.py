"""Idempotency-Key decisions and fingerprints, without AWS."""

import pytest

from rideonce.logic import idempotency
from rideonce.logic.errors import IdempotencyKeyReusedError, RequestInFlightError
from rideonce.models.idempotency import IdempotencyRecord, KeyStatus, StoredResponse

RESPONSE = StoredResponse(status_code=201, body='{"rideId":"r"}', headers={"ETag": '"1"'})


def record(status: KeyStatus, fingerprint: str = "fp", response: StoredResponse | None = None) -> IdempotencyRecord:
    return IdempotencyRecord(
        scope="caller|key",
        status=status,
        fingerprint=fingerprint,
        token="t",
        lock_expires_at=1_000,
        expires_at=90_000,
        response=response,
    )


def test_fingerprint_ignores_key_order_but_not_values_method_or_path() -> None:
    base = idempotency.fingerprint("POST", "/rides", {"a": 1, "b": [1, 2]})
    assert base == idempotency.fingerprint("post", "/rides", {"b": [1, 2], "a": 1})
    assert base != idempotency.fingerprint("POST", "/rides", {"a": 2, "b": [1, 2]})
    assert base != idempotency.fingerprint("POST", "/rides", {"a": 1, "b": [2, 1]})
    assert base != idempotency.fingerprint("PUT", "/rides", {"a": 1, "b": [1, 2]})
    assert base != idempotency.fingerprint("POST", "/rides/x", {"a": 1, "b": [1, 2]})


def test_scope_separates_callers() -> None:
    assert idempotency.scope("alice", "k") != idempotency.scope("bob", "k")


def test_completed_key_with_same_fingerprint_replays() -> None:
    assert idempotency.decide(record(KeyStatus.COMPLETED, response=RESPONSE), "fp", now=500).response == RESPONSE


@pytest.mark.parametrize("status", list(KeyStatus))
def test_other_fingerprint_is_key_reuse_whatever_the_status(status: KeyStatus) -> None:
    with pytest.raises(IdempotencyKeyReusedError):
        idempotency.decide(record(status, response=RESPONSE), "another", now=500)


def test_in_progress_key_is_in_flight_with_the_time_left_on_its_lock() -> None:
    with pytest.raises(RequestInFlightError) as raised:
        idempotency.decide(record(KeyStatus.IN_PROGRESS), "fp", now=990)
    assert raised.value.retry_after_seconds == 10
