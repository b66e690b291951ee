"""The load test, small: concurrent HTTP clients retrying with their keys; the invariants hold, not the times."""

import pytest

from local import load

pytestmark = pytest.mark.e2e


def test_concurrent_clients_retrying_their_keys_get_one_ride_per_key_and_every_invariant(
    restore_environment: None,
) -> None:
    # Given / When 4 clients drive 3 rides each, sending every request twice with its key
    result = load.run(clients=4, rides_per_client=3, retries=1, seed=5)
    # Then every request was answered without a server error, and every check of make demo held
    assert set(result.statuses) <= {200, 201}, result.statuses
    assert result.requests == sum(result.statuses.values()) >= 4 * 3 * 2 * 3
    failed = [f"{check.name}: {check.detail}" for check in result.checks if not check.held]
    assert not failed, failed
    assert {check.name for check in result.checks} >= {"exactly one ride per creation key", "no unhandled exception"}
