"""The reconciler's pure decisions: commit buckets, run windows, and which versions to republish."""

from datetime import UTC, datetime, timedelta, timezone

from rideonce.logic.reconcile import (
    COMMIT_SHARDS,
    CommitKey,
    Repair,
    Window,
    buckets,
    commit_bucket,
    repairs,
    window,
)

T0 = datetime(2026, 11, 22, 9, 50, 12, 345000, tzinfo=UTC)
PERIOD = timedelta(minutes=5)
GRACE = timedelta(minutes=15)


def test_a_ride_always_lands_in_the_same_shard_of_its_commit_hour() -> None:
    bucket = commit_bucket("ride-1", T0)
    assert bucket == commit_bucket("ride-1", T0 + timedelta(minutes=9))
    hour, shard = bucket.split("#")
    assert hour == "2026-11-22T09"
    assert 0 <= int(shard) < COMMIT_SHARDS
    assert commit_bucket("ride-1", T0 + timedelta(minutes=10)).startswith("2026-11-22T10#")


def test_commit_buckets_spread_rides_over_every_shard() -> None:
    shards = {commit_bucket(f"ride-{n}", T0).split("#")[1] for n in range(200)}
    assert shards == {str(shard) for shard in range(COMMIT_SHARDS)}


def test_a_bucket_is_the_utc_hour_whatever_the_offset_of_the_instant() -> None:
    berlin = T0.astimezone(timezone(timedelta(hours=1)))
    assert (
        commit_bucket("ride-1", berlin)
        == commit_bucket("ride-1", T0)
        == f"2026-11-22T09#{commit_bucket('ride-1', T0)[-1]}"
    )


def test_every_commit_is_judged_by_exactly_two_runs_and_never_before_the_grace() -> None:
    # Given runs every period from a start that is not aligned with anything
    first_run = datetime(2026, 11, 22, 9, 0, 7, tzinfo=UTC)
    runs = [first_run + n * PERIOD for n in range(40)]
    # When a change commits at any millisecond in the middle of that span
    for offset_ms in range(0, 30 * 60 * 1000, 7919):
        committed = first_run + timedelta(minutes=40, milliseconds=offset_ms)
        judging = [
            run for run in runs if window(run, PERIOD, GRACE).start <= committed < window(run, PERIOD, GRACE).end
        ]
        # Then two consecutive runs judge it, both at least the grace period after it committed
        assert len(judging) == 2, committed
        assert all(run - committed >= GRACE for run in judging)


def test_buckets_cover_every_hour_the_window_touches_and_every_shard() -> None:
    span = Window(start=datetime(2026, 11, 22, 9, 55, tzinfo=UTC), end=datetime(2026, 11, 22, 10, 5, tzinfo=UTC))
    assert buckets(span) == [f"2026-11-22T09#{s}" for s in range(COMMIT_SHARDS)] + [
        f"2026-11-22T10#{s}" for s in range(COMMIT_SHARDS)
    ]


def test_a_window_ending_on_the_hour_does_not_read_the_next_hour() -> None:
    span = Window(start=datetime(2026, 11, 22, 9, 50, tzinfo=UTC), end=datetime(2026, 11, 22, 10, 0, tzinfo=UTC))
    assert {bucket.split("#")[0] for bucket in buckets(span)} == {"2026-11-22T09"}


def test_only_rides_whose_projection_is_behind_are_repaired_from_their_first_missing_version() -> None:
    committed = [
        CommitKey("ride-a", 3),
        CommitKey("ride-a", 4),  # applied up to 2: republish 3..4
        CommitKey("ride-b", 2),  # applied up to 2: nothing to do
        CommitKey("ride-c", 1),  # never applied: republish 1..1
        CommitKey("ride-d", 2),  # applied up to 3 already (a later change): nothing to do
    ]
    applied = {"ride-a": 2, "ride-b": 2, "ride-d": 3}
    assert repairs(committed, applied) == [Repair("ride-a", 3, 4), Repair("ride-c", 1, 1)]


def test_a_missing_change_before_the_window_is_republished_with_the_ones_in_it() -> None:
    # Version 1 committed before the window and was lost; version 2 is in the window and waits for it.
    assert repairs([CommitKey("ride-a", 2)], {}) == [Repair("ride-a", 1, 2)]


def test_nothing_committed_means_nothing_to_repair() -> None:
    assert repairs([], {"ride-a": 4}) == []
