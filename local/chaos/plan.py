"""The fault schedule of one seed: which faults exist, at which hop, how often, and the seeded decisions.

One seed decides every fault, so a failing run replays exactly. A decision is a pure function of
(seed, fault, subject, attempt), where the subject is what the fault happens to (an Idempotency-Key, an
event's idempotency key, a poison message's id) and the attempt counts how often that subject has reached
that point before. Why not one random stream: the consumer designs make different calls in a different
order (ours defers an early event and the baselines do not; a crash leaves the rest of a batch
unprocessed), so a shared stream would hand each design another schedule. Hashing per occurrence gives
every design that reaches the same point with the same event the same fault.

A new fault is one `Fault` member with its `FAULTS` row here, and one injector that asks the plan
(`occurs`) at the point where the fault happens (the injector modules: api_faults, relay_faults,
bus_faults, consumer_faults).
"""

import hashlib
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Hop(StrEnum):
    CLIENT_TO_API = "client -> API"
    API_TO_TABLES = "API -> tables"
    STREAM_TO_BUS = "stream -> Pipe -> bus"
    BUS_TO_QUEUE = "bus -> queue"
    QUEUE_TO_CONSUMER = "queue -> consumer"


class Fault(StrEnum):
    CLIENT_RETRY = "client-retry"
    CONCURRENT_REQUESTS = "concurrent-requests"
    API_CRASH_AFTER_COMMIT = "api-crash-after-commit"
    POISON_OUTBOX_ITEM = "poison-outbox-item"
    PIPE_BATCH_AGAIN = "pipe-batch-again"
    PUT_EVENTS_PARTIAL_FAILURE = "put-events-partial-failure"
    PUT_EVENTS_DUPLICATE = "put-events-duplicate"
    PIPE_GIVES_UP = "pipe-gives-up"
    STREAM_TRIMMED = "stream-trimmed"
    RULE_FIRES_TWICE = "rule-fires-twice"
    ARCHIVE_REPLAY = "archive-replay"
    POISON_MESSAGE = "poison-message"
    OUT_OF_ORDER = "out-of-order"
    NOT_DELETED = "not-deleted"
    CONCURRENT_CONSUMERS = "concurrent-consumers"
    CRASH_AFTER_PARSE = "crash-after-parse"
    CRASH_AFTER_READ = "crash-after-read"
    CRASH_MID_EFFECT = "crash-mid-effect"
    CRASH_AFTER_EFFECT = "crash-after-effect"
    CRASH_AFTER_RECORD = "crash-after-record"
    CRASH_BEFORE_DELETE = "crash-before-delete"


@dataclass(frozen=True)
class FaultSpec:
    hop: Hop
    what: str


FAULTS: dict[Fault, FaultSpec] = {
    Fault.CLIENT_RETRY: FaultSpec(Hop.CLIENT_TO_API, "the client retries with the same key after the commit"),
    Fault.CONCURRENT_REQUESTS: FaultSpec(Hop.CLIENT_TO_API, "two threads send the same request and key at once"),
    Fault.API_CRASH_AFTER_COMMIT: FaultSpec(
        Hop.API_TO_TABLES, "the API function dies after its commit, before it answers; the client retries"
    ),
    Fault.POISON_OUTBOX_ITEM: FaultSpec(Hop.API_TO_TABLES, "a malformed item written to the outbox table"),
    Fault.PIPE_BATCH_AGAIN: FaultSpec(Hop.STREAM_TO_BUS, "a delivered Pipe batch is delivered again"),
    Fault.PUT_EVENTS_PARTIAL_FAILURE: FaultSpec(
        Hop.STREAM_TO_BUS, "PutEvents reports one failed entry: the Pipe re-runs the batch through enrichment"
    ),
    Fault.PUT_EVENTS_DUPLICATE: FaultSpec(Hop.STREAM_TO_BUS, "an accepted entry is put again under a new id"),
    Fault.PIPE_GIVES_UP: FaultSpec(
        Hop.STREAM_TO_BUS,
        "the bus refuses every attempt of a batch: the Pipe bisects, retries, then sends pointers to its DLQ",
    ),
    Fault.STREAM_TRIMMED: FaultSpec(
        Hop.STREAM_TO_BUS, "a stream record is trimmed (24 h) before the Pipe read it: the Pipe never sees it"
    ),
    Fault.RULE_FIRES_TWICE: FaultSpec(Hop.BUS_TO_QUEUE, "the rule delivers the same EventBridge message twice"),
    Fault.ARCHIVE_REPLAY: FaultSpec(
        Hop.BUS_TO_QUEUE, "a time window of the archive is replayed hours later (rate = share of the run)"
    ),
    Fault.POISON_MESSAGE: FaultSpec(Hop.BUS_TO_QUEUE, "a malformed body is sent to the consumer queue"),
    Fault.OUT_OF_ORDER: FaultSpec(Hop.QUEUE_TO_CONSUMER, "a message is held back, so later versions arrive first"),
    Fault.NOT_DELETED: FaultSpec(
        Hop.QUEUE_TO_CONSUMER, "a processed message is not deleted: SQS redelivers it after the visibility timeout"
    ),
    Fault.CONCURRENT_CONSUMERS: FaultSpec(Hop.QUEUE_TO_CONSUMER, "two consumers handle the same message at once"),
    Fault.CRASH_AFTER_PARSE: FaultSpec(Hop.QUEUE_TO_CONSUMER, "the consumer dies after parsing the message"),
    Fault.CRASH_AFTER_READ: FaultSpec(
        Hop.QUEUE_TO_CONSUMER, "the consumer dies after its check (its one transaction, processed key, Powertools lock)"
    ),
    Fault.CRASH_MID_EFFECT: FaultSpec(
        Hop.QUEUE_TO_CONSUMER, "the consumer dies between two effect writes (none in a one-transaction design)"
    ),
    Fault.CRASH_AFTER_EFFECT: FaultSpec(Hop.QUEUE_TO_CONSUMER, "the consumer dies after the effect"),
    Fault.CRASH_AFTER_RECORD: FaultSpec(
        Hop.QUEUE_TO_CONSUMER, "the consumer dies after recording the event as processed"
    ),
    Fault.CRASH_BEFORE_DELETE: FaultSpec(
        Hop.QUEUE_TO_CONSUMER, "the consumer dies after reporting the record, before SQS deletes the message"
    ),
}

CONSUMER_CRASHES = (
    Fault.CRASH_AFTER_PARSE,
    Fault.CRASH_AFTER_READ,
    Fault.CRASH_MID_EFFECT,
    Fault.CRASH_AFTER_EFFECT,
    Fault.CRASH_AFTER_RECORD,
    Fault.CRASH_BEFORE_DELETE,
)
"""The crash points between a consumer's steps. A crash kills the whole invocation, so the batch stays."""

PER_DELIVERY_CRASHES = (Fault.CRASH_AFTER_PARSE, Fault.CRASH_AFTER_READ, Fault.CRASH_BEFORE_DELETE)
"""The crash points every delivery passes, duplicates included; the others only a first application passes."""

POISON_SHARE = 0.01
"""Poison per ride change, as a share of the headline rate: enough to park some, few enough to read them."""

LOSS_SHARE = 0.01
"""Batches given up and records trimmed, as a share of the headline rate: rare on AWS, each a lost change."""


@dataclass(frozen=True)
class FaultRates:
    """How often each fault fires, per occurrence of its subject at its point (0 switches it off)."""

    rates: Mapping[Fault, float]

    @classmethod
    def uniform(cls, rate: float, batch_size: int = 10) -> "FaultRates":
        """Every kind fires on `rate` of its occasions, so every hop gets at least `rate` extra deliveries.

        Two kinds are scaled so they add about `rate` too, rather than being `rate` per occurrence. A crash
        redelivers the whole batch (`batch_size` records), so a crash point passed once per event (the
        effect points) fires at rate / batch_size, and the three every delivery passes (after parsing, after
        the check, before the delete) at a third of that each. Poison is `rate` x POISON_SHARE per change,
        and the two losses at the relay `rate` x LOSS_SHARE per batch (given up) and per record (trimmed).
        """
        rates = dict.fromkeys(Fault, rate)
        for crash in CONSUMER_CRASHES:
            rates[crash] = rate / batch_size
        for crash in PER_DELIVERY_CRASHES:
            rates[crash] = rate / (len(PER_DELIVERY_CRASHES) * batch_size)
        rates[Fault.POISON_OUTBOX_ITEM] = rates[Fault.POISON_MESSAGE] = rate * POISON_SHARE
        rates[Fault.PIPE_GIVES_UP] = rates[Fault.STREAM_TRIMMED] = rate * LOSS_SHARE
        return cls(rates)

    def __getitem__(self, fault: Fault) -> float:
        return self.rates.get(fault, 0.0)

    def with_rate(self, fault: Fault, rate: float) -> "FaultRates":
        return FaultRates({**self.rates, fault: rate})


@dataclass
class FaultCount:
    evaluated: int = 0
    injected: int = 0


class FaultPlan:
    """The fault schedule of one seed: `decide` is pure; `occurs` numbers the attempts and keeps count."""

    def __init__(self, seed: int, rates: FaultRates) -> None:
        self.seed = seed
        self.rates = rates
        self._lock = threading.Lock()
        self._attempts: Counter[tuple[Fault, str]] = Counter()
        self.counts: dict[Fault, FaultCount] = {fault: FaultCount() for fault in Fault}

    def draw(self, fault: Fault, subject: str, attempt: int) -> float:
        """A uniform number in [0, 1) from (seed, fault, subject, attempt): the same inputs, the same number."""
        text = f"{self.seed}\x1f{fault.value}\x1f{subject}\x1f{attempt}"
        digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def decide(self, fault: Fault, subject: str, attempt: int) -> bool:
        rate = self.rates[fault]
        return rate > 0 and self.draw(fault, subject, attempt) < rate

    def occurs(self, fault: Fault, subject: str) -> bool:
        """Whether `fault` hits `subject` this time: its next attempt at this point, decided and counted."""
        with self._lock:
            attempt = self._attempts[(fault, subject)]
            self._attempts[(fault, subject)] += 1
            hit = self.decide(fault, subject, attempt)
            self.counts[fault].evaluated += 1
            self.counts[fault].injected += hit
        return hit

    def injected(self, fault: Fault, times: int = 1, evaluated: int | None = None) -> None:
        """Count a fault injected by quantity rather than by decision (poison, replayed events, client retries)."""
        with self._lock:
            self.counts[fault].evaluated += times if evaluated is None else evaluated
            self.counts[fault].injected += times

    def fork(self) -> "FaultPlan":
        """The same schedule with fresh attempt numbers and counts: each consumer design starts from zero."""
        return FaultPlan(self.seed, self.rates)

    def summary(self, faults: tuple[Fault, ...] = tuple(Fault)) -> dict[str, dict[str, float]]:
        return {
            fault.value: {
                "rate": self.rates[fault],
                "evaluated": self.counts[fault].evaluated,
                "injected": self.counts[fault].injected,
            }
            for fault in faults
        }


class Crash(BaseException):
    """An injected crash. A BaseException, as a killed invocation is: no `except Exception` stops it."""

    def __init__(self, fault: Fault, subject: str) -> None:
        super().__init__(f"injected {fault.value} at {subject}")
        self.fault = fault
        self.subject = subject
