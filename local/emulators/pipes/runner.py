"""Running one Pipe: batching a shard's records, attempting each batch, retrying, bisecting, dead-lettering.

`PipeRunner` is what callers run (the pipeline, chaos, tests); `pipe_runners` builds one per Pipe of the
stack. The source (source.py) fills each shard's buffer and the target (target.py) delivers a batch; this
module decides when a batch is formed and what a failed attempt leads to, on the runner's clock
(local/emulators/clock.py):

- Batches of at most BatchSize, sent when full or MaximumBatchingWindowInSeconds after their first record
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-pipes-batching-concurrency.html).
- A PutEvents partial failure retries only the remainder, through the whole pipe, enrichment included
  (batching page, "Partial batch failure").
- A failed batch (enrichment error, PutEvents failure): with AUTOMATIC_BISECT a batch of two or more is
  halved and each half tried in order (halving does not count as a retry); otherwise it is retried, with a
  backoff, up to MaximumRetryAttempts (-1: until its records are too old). Records older than
  MaximumRecordAgeInSeconds (against `now`) are not sent again
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-pipes-error-troubleshooting.html).
- A batch out of retries or out of age goes to the DeadLetterConfig SQS queue (without one it is
  discarded), and only then does its shard move on. The message is a pointer, not the records:
  `context` (partnerResourceArn, condition), `version`, `timestamp` and `DDBStreamBatchInfo` (shard, first
  and last sequence numbers, arrival times, batch size, stream ARN), the shape of Lambda's documented
  on-failure record for DynamoDB streams
  (https://docs.aws.amazon.com/lambda/latest/dg/services-dynamodb-errors.html); the Pipes pages document
  no shape of their own. The condition is "RetryAttemptsExhausted" for retries; AWS documents no name
  for records past their maximum age, so that message has no condition. A person redrives from the
  outbox table (README), which outlives the 24 h stream.

Not modelled: the 6 MB payload limit and the throttling AWS applies to a failing pipe beyond the retry
backoff here (1 s doubling to 30 s, an emulator choice: AWS documents none). ParallelizationFactor above 1
runs one batch at a time per shard (stricter order than AWS).
"""

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3

from local.aws.functions import LocalFunction
from local.aws.template import Stack
from local.aws.transport import Transport
from local.emulators.clock import Clock, WallClock
from local.emulators.pipes.config import PipeConfig, pipe_configs
from local.emulators.pipes.source import StreamReader, created_at
from local.emulators.pipes.state import Batch, PipeStats, Shard
from local.emulators.pipes.target import AroundDelivery, BatchFailure, BusTarget

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_sqs import SQSClient

LOG = logging.getLogger(__name__)

RETRY_BACKOFF_SECONDS = 1.0
RETRY_BACKOFF_MAX_SECONDS = 30.0
RETRIES_EXHAUSTED = "RetryAttemptsExhausted"


class PipeRunner:
    """Runs one Pipe: `poll()` in a foreground loop, `run_until_quiet()` to drain, `run_forever()` in a thread.

    `enrich` is the enrichment function's invocation (e.g. `LocalFunction.invoke`); it gets the bare JSON
    array of records. Record age, the batching window and the retry backoff are measured on `clock` (the
    clock moto was given, which stamps the stream records); `time_scale` multiplies the two waits only,
    and 0 skips them (for a caller that runs its pipe on this machine's time and must never wait).
    `on_event` gets one dict per event the bus accepted (see `describe_forwarded`), `on_dead_letter` each
    dead-letter message body.
    `around_delivery` is the seam for faults at the target (see `AroundDelivery`); without it every
    attempt delivers once.
    """

    def __init__(
        self,
        config: PipeConfig,
        enrich: Callable[[Any], Any] | None = None,
        *,
        streams: "DynamoDBStreamsClient | None" = None,
        events: "EventBridgeClient | None" = None,
        sqs: "SQSClient | None" = None,
        clock: Clock | None = None,
        time_scale: float = 1.0,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_dead_letter: Callable[[dict[str, Any]], None] | None = None,
        around_delivery: AroundDelivery | None = None,
    ) -> None:
        if config.enrichment_function is not None and enrich is None:
            raise ValueError(f"{config.logical_id} enriches with {config.enrichment_function}: pass its invoke")
        self.config = config
        self.stats = PipeStats()
        self._sqs = sqs or boto3.client("sqs")
        self._clock: Clock = clock or WallClock()
        self._time_scale = time_scale
        self._on_dead_letter = on_dead_letter
        self._around_delivery = around_delivery
        self._source = StreamReader(config, streams or boto3.client("dynamodbstreams"), self._clock, self.stats)
        self._target = BusTarget(config, enrich, events or boto3.client("events"), self.stats, on_event)
        self._lock = threading.RLock()
        self._dlq_url = (
            self._sqs.get_queue_url(QueueName=config.dead_letter_arn.rsplit(":", 1)[1])["QueueUrl"]
            if config.dead_letter_arn
            else None
        )
        # Iterators are taken now, as AWS takes them when the pipe is created: LATEST means "from here".
        self._source.discover(initial=True)

    # ------------------------------------------------------------ public API

    def poll(self) -> int:
        """Do everything that is due now; return how much (records read or attempted), 0 when nothing was.

        Per shard: read new records, form the batches that are due and send them one after another, until
        the stream has nothing more, a batch waits for its window, or a batch failed (its retry, or its
        halves, come at a later poll, so one call never loops on a failing batch).
        """
        with self._lock:
            if self.config.desired_state == "STOPPED":
                return 0
            self._source.refresh_if_due()
            work = 0
            for shard in list(self._source.shards.values()):
                if not self._source.may_read(shard):
                    continue
                while True:
                    done, failed = self._step(shard)
                    work += done
                    if done == 0 or failed:
                        break
            return work

    def next_due(self) -> float | None:
        """The clock's time when a waiting batch is due (its window closes, or its retry comes); None: none waits."""
        with self._lock:
            moments = []
            for shard in self._source.shards.values():
                if shard.pending:
                    moments.append(shard.pending[0].not_before)
                elif shard.buffered_since is not None:
                    moments.append(shard.buffered_since + self.config.batching_window_seconds * self._time_scale)
            return min(moments, default=None)

    def busy(self) -> bool:
        """Records are waiting for their batch, or a batch for its retry: the pipe is not quiet yet."""
        with self._lock:
            return any(shard.buffer or shard.pending for shard in self._source.shards.values())

    def run_until_quiet(self, timeout_seconds: float = 60.0, idle_sleep: float = 0.02) -> PipeStats:
        """Poll until the stream has nothing new and nothing waits; TimeoutError if that takes too long.

        With MaximumRetryAttempts -1 and no MaximumRecordAgeInSeconds a failing batch never settles (as in
        AWS, where it blocks its shard until DynamoDB trims the record), so the timeout is what ends it.
        """
        deadline = time.monotonic() + timeout_seconds
        while True:
            work = self.poll()
            if work == 0 and not self.busy():
                return self.stats
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.config.name} did not go quiet within {timeout_seconds} s: {self.stats}")
            if work == 0:
                self._idle(idle_sleep)

    def _idle(self, idle_sleep: float) -> None:
        """Wait for the next due batch on the clock; a real pause when nothing is due yet (a batch in reading)."""
        due = self.next_due()
        if due is None or due <= self._clock.now():
            time.sleep(idle_sleep)
        else:
            self._clock.sleep_until(due)

    def run_forever(self, stop: threading.Event, idle_sleep: float = 0.25) -> None:
        """Poll until `stop` is set, for a background thread; AWS polls an idle shard four times a second."""
        while not stop.is_set():
            try:
                work = self.poll()
            except Exception:
                LOG.exception("pipe %s: poll failed; trying again", self.config.name)
                work = 0
            if work == 0:
                stop.wait(idle_sleep)

    # ------------------------------------------------------------ batching

    def _step(self, shard: Shard) -> tuple[int, bool]:
        """One move on a shard: read, form a due batch, attempt the batch at its head. (work, failed)."""
        work = 0
        if not shard.pending:
            if len(shard.buffer) < self.config.batch_size and shard.iterator is not None:
                work += self._source.read(shard)
            if self._batch_due(shard):
                size = self.config.batch_size
                shard.pending.append(Batch(shard.buffer[:size]))
                del shard.buffer[:size]
                shard.buffered_since = self._clock.now() if shard.buffer else None
                self.stats.batches += 1
        if shard.pending and shard.pending[0].not_before <= self._clock.now():
            attempted, failed = self._attempt(shard)
            return work + attempted, failed
        return work, False

    def _batch_due(self, shard: Shard) -> bool:
        """A batch goes when full, when its window has passed, or when its closed shard has no more to give."""
        if not shard.buffer:
            return False
        if len(shard.buffer) >= self.config.batch_size or shard.iterator is None:
            return True
        window = self.config.batching_window_seconds * self._time_scale
        return shard.buffered_since is not None and self._clock.now() - shard.buffered_since >= window

    # ------------------------------------------------------------ one attempt

    def _attempt(self, shard: Shard) -> tuple[int, bool]:
        """Deliver the batch at the shard's head, its too-old records dead-lettered first. (work, failed)."""
        batch = shard.pending[0]
        expired = self._expired(batch.records)
        if expired:
            old = {id(record) for record in expired}
            batch.records = [record for record in batch.records if id(record) not in old]
            self.stats.records_expired += len(expired)
            age = self.config.maximum_record_age_seconds
            reason = f"older than MaximumRecordAgeInSeconds ({age} s); last error: {batch.error or 'none'}"
            self._dead_letter(shard, expired, None, reason)
            if not batch.records:
                shard.pending.popleft()
                return len(expired), False
        batch.attempts += 1
        attempted = len(expired) + len(batch.records)
        try:
            if self._around_delivery is None:
                self._target.deliver(shard.shard_id, batch)
            else:
                self._around_delivery(list(batch.records), lambda: self._target.deliver(shard.shard_id, batch))
        except BatchFailure as failure:
            LOG.info("pipe %s: batch of %d failed: %s", self.config.name, len(batch.records), failure)
            if failure.remainder is not None:
                # Part of the batch reached the bus: only the remainder is tried again, through the enrichment.
                batch.records = failure.remainder
            self._failed(shard, batch, str(failure))
            return attempted, True
        shard.pending.popleft()
        return attempted, False

    def _expired(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records past MaximumRecordAgeInSeconds on the clock (-1: none ever are): never sent again."""
        limit = self.config.maximum_record_age_seconds
        if limit < 0:
            return []
        now = self._clock.now()
        return [record for record in records if now - created_at(record) > limit]

    # ------------------------------------------------------------ failures

    def _failed(self, shard: Shard, batch: Batch, reason: str) -> None:
        """Bisect, retry later, or give the batch up to the dead-letter queue; the shard waits meanwhile."""
        batch.error = reason
        if self.config.bisect and len(batch.records) > 1:
            half = (len(batch.records) + 1) // 2
            shard.pending.popleft()
            shard.pending.appendleft(Batch(batch.records[half:], attempts=batch.attempts, error=reason))
            shard.pending.appendleft(Batch(batch.records[:half], attempts=batch.attempts, error=reason))
            self.stats.bisections += 1
            return
        limit = self.config.maximum_retry_attempts
        if limit < 0 or batch.retries < limit:
            batch.retries += 1
            self.stats.retries += 1
            backoff = min(RETRY_BACKOFF_SECONDS * 2 ** (batch.retries - 1), RETRY_BACKOFF_MAX_SECONDS)
            batch.not_before = self._clock.now() + backoff * self._time_scale
            return
        shard.pending.popleft()
        self._dead_letter(shard, batch.records, RETRIES_EXHAUSTED, reason)

    def _dead_letter(self, shard: Shard, records: list[dict[str, Any]], condition: str | None, reason: str) -> None:
        """A pointer to the records in the stream, never the records: a person redrives from the outbox table.

        `condition` is None for records past MaximumRecordAgeInSeconds: AWS documents no condition name for
        that case, so the emulator sends none rather than invent one.
        """
        first, last = records[0], records[-1]
        context: dict[str, Any] = {"partnerResourceArn": self.config.arn}
        if condition is not None:
            context["condition"] = condition
        body: dict[str, Any] = {
            "context": context,
            "version": "1.0",
            "timestamp": _iso(self._clock.now()),
            "DDBStreamBatchInfo": {
                "shardId": shard.shard_id,
                "startSequenceNumber": first["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": last["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(created_at(first)),
                "approximateArrivalOfLastRecord": _iso(created_at(last)),
                "batchSize": len(records),
                "streamArn": self.config.source_arn,
            },
        }
        LOG.warning(
            "pipe %s: %d records dead-lettered (%s): %s", self.config.name, len(records), condition or "age", reason
        )
        if self._dlq_url is None:
            self.stats.records_discarded += len(records)
        else:
            self._sqs.send_message(QueueUrl=self._dlq_url, MessageBody=json.dumps(body))
            self.stats.dlq_messages += 1
            self.stats.records_to_dlq += len(records)
        if self._on_dead_letter is not None:
            self._on_dead_letter(body)


def pipe_runners(
    stack: Stack,
    local_functions: Mapping[str, LocalFunction],
    *,
    clock: Clock | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    transport: Transport | None = None,
) -> list[PipeRunner]:
    """A runner for every Pipe of the stack, each enriching through its template function run in-process.

    `transport` says how the runners reach moto; without it, boto3's default clients (AWS_ENDPOINT_URL).
    """
    return [
        PipeRunner(
            config,
            local_functions[config.enrichment_function].invoke if config.enrichment_function else None,
            streams=transport.streams() if transport else None,
            events=transport.events() if transport else None,
            sqs=transport.sqs() if transport else None,
            clock=clock,
            on_event=on_event,
        )
        for config in pipe_configs(stack)
    ]


def describe_forwarded(event: Mapping[str, Any]) -> str:
    """One log line for an event the Pipe put on the bus; a later attempt may repeat an earlier put."""
    detail = event.get("detail")
    metadata = detail.get("metadata") if isinstance(detail, dict) else None
    key = metadata.get("idempotencyKey") if isinstance(metadata, dict) else None
    event_type = metadata.get("eventType") if isinstance(metadata, dict) else None
    line = f"pipe {event['pipe']}: {event_type or '?'} as {event['detailType']} ({event['source']})"
    line += f" -> {event['eventBusName']}"
    line += f" id={event['eventId']}"
    if key:
        line += f" key={key}"
    if event.get("attempt", 1) > 1:
        line += f" [attempt {event['attempt']}: may repeat an event already put]"
    return line


def _iso(epoch_seconds: float) -> str:
    """ISO 8601 UTC with milliseconds, as the on-failure record's timestamps are written."""
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
