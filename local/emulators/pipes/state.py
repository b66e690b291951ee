"""What a Pipe runner keeps between polls: its counters, each shard's position, buffer and pending batches.

For: source.py (which fills a shard's buffer), target.py and runner.py (which move its batches). Plain
data, no behaviour beyond `Shard.finished`; nothing here talks to AWS or reads the clock.
"""

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PipeStats:
    """What the Pipe did, for the demo report. `events_put` counts re-puts: it exceeds the records on retries."""

    records_read: int = 0
    filtered_out: int = 0
    batches: int = 0
    enrichment_invocations: int = 0
    enrichment_errors: int = 0
    empty_enrichments: int = 0
    events_put: int = 0
    put_failures: int = 0
    retries: int = 0
    bisections: int = 0
    records_expired: int = 0
    dlq_messages: int = 0
    records_to_dlq: int = 0
    records_discarded: int = 0


@dataclass
class Batch:
    """Records sent together, and what their attempts so far decide about the next one."""

    records: list[dict[str, Any]]
    attempts: int = 0  # attempts made on batches holding these records, parents before a bisection included
    retries: int = 0  # retries of exactly these records, what MaximumRetryAttempts limits
    not_before: float = 0.0  # the clock's time of the next attempt
    error: str | None = None  # why the last attempt failed


@dataclass
class Shard:
    """One stream shard as the Pipe reads it: records are buffered, then batched, then delivered in order."""

    shard_id: str
    parent_id: str | None
    iterator: str | None  # None once the shard is closed and read to its end
    last_sequence: str | None = None
    buffer: list[dict[str, Any]] = field(default_factory=list)
    buffered_since: float | None = None
    pending: deque[Batch] = field(default_factory=deque)

    @property
    def finished(self) -> bool:
        return self.iterator is None and not self.buffer and not self.pending
