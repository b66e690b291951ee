"""Which accepted changes have not taken effect, and which events to publish again: pure decisions.

The outbox table is the source of truth for as long as it keeps a change (its TTL, 7 days). Every outbox
record is also filed under a *commit bucket* (the UTC hour of its commit and a shard of its ride id), the
partition key of the outbox table's CommitTime index, with the commit instant as sort key. A run of the
reconciler reads only the records committed inside its window, so each change is read a fixed number of
times over its life, never by a scan of the table.

The window of a run that starts at `now` is `[now - grace - 2 * period, now - grace)`: every change is in
the windows of two consecutive runs, so a run that fails or starts late loses nothing, and nothing younger
than the grace period is judged (the Pipe, the bus and the consumer usually take seconds).
"""

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

COMMIT_SHARDS = 4
"""Shards per hour of the CommitTime index: a GSI partition takes 1,000 writes per second, so four let the
API commit 4,000 ride changes per second before the index throttles. Fixed: changing it moves every record
written afterwards to other buckets, and a run would need to read both layouts for a week."""


@dataclass(frozen=True)
class Window:
    """A half-open interval of commit instants, [start, end)."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class CommitKey:
    """What the CommitTime index holds of an outbox record: enough to find its ride's progress."""

    ride_id: str
    version: int


@dataclass(frozen=True)
class Repair:
    """A ride whose projection stopped short: publish its events `from_version`..`to_version` again, in order."""

    ride_id: str
    from_version: int
    to_version: int


def commit_bucket(ride_id: str, committed_at: datetime) -> str:
    """The CommitTime partition of a change: its UTC hour and the shard its ride id hashes to."""
    shard = int.from_bytes(hashlib.sha256(ride_id.encode()).digest()[:4], "big") % COMMIT_SHARDS
    return f"{committed_at.astimezone(UTC):%Y-%m-%dT%H}#{shard}"


def repair_horizon(period: timedelta, grace: timedelta) -> timedelta:
    """How long after its commit a change the relay lost may wait for its republication: the second of the
    two runs that judge it starts at most grace + 2 x period after the commit (see `window`)."""
    return grace + 2 * period


def window(now: datetime, period: timedelta, grace: timedelta) -> Window:
    """The commits a run at `now` judges: old enough to have taken effect, and covered by two runs."""
    end = now - grace
    return Window(start=end - 2 * period, end=end)


def buckets(span: Window) -> list[str]:
    """Every CommitTime partition that can hold a commit of the window: each hour it touches, each shard."""
    hour = span.start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = []
    while hour < span.end:
        hours.append(hour)
        hour += timedelta(hours=1)
    return [f"{start:%Y-%m-%dT%H}#{shard}" for start in hours for shard in range(COMMIT_SHARDS)]


def repairs(committed: Iterable[CommitKey], applied: Mapping[str, int]) -> list[Repair]:
    """The rides whose projection is behind a change committed in the window, with the versions it lacks.

    `applied` is the projection's version per ride (absent: nothing applied yet). Every version after the
    applied one is published again, not only the ones in the window: a change committed before the window
    and never applied blocks its successors, and the consumer drops whatever did take effect meanwhile.
    """
    latest: dict[str, int] = {}
    for key in committed:
        latest[key.ride_id] = max(key.version, latest.get(key.ride_id, 0))
    return [
        Repair(ride_id=ride_id, from_version=applied.get(ride_id, 0) + 1, to_version=version)
        for ride_id, version in sorted(latest.items())
        if applied.get(ride_id, 0) < version
    ]
