"""Seeded fault injection for the local stack: every duplicate, crash and delay of design.md, at every hop.

One seed decides every fault, so a failing run replays exactly. A decision is a pure function of
(seed, fault, subject, attempt), where the subject is what the fault happens to (an Idempotency-Key, an
event's idempotency key, a poison message's id) and the attempt counts how often that subject has reached
that point before. Why not one random stream: the consumer designs make different calls in a different
order (ours defers an early event and the baselines do not; a crash leaves the rest of a batch
unprocessed), so a shared stream would hand each design another schedule. Hashing per occurrence gives
every design that reaches the same point with the same event the same fault.

The injectors wrap the code under test at runtime and change none of it:

- client -> API: `FaultyApiCaller` (concurrent duplicates, a crash after the commit, then the client's
  retry) over `RideTraffic`'s own retries; `api_crashes_after_commit` wraps `RideStore.commit`,
  `lined_up_claims` orders a concurrent pair's `IdempotencyStore.claim`s; `SeededRideIds` makes ride ids
  follow from the seed.
- stream -> Pipe -> bus: `FaultyEventBridge` (PutEvents partial failures and duplicates), and
  `RelayFaults` through the runner's declared seams (its streams client and `around_delivery`): a batch
  delivered again, a batch the Pipe gives up on (to its dead-letter queue) and stream records trimmed
  before the Pipe read them; the last two lose changes, which only the reconciler brings back.
- queue -> consumer: `instrument_*` put crash points between each design's steps, a `Turnstile` that makes
  two consumers of one message check before either writes, and an `EffectLog` of every effect written.

A crash is a `Crash`, a `BaseException`: like a killed process, nothing in the code under test catches it.
"""

import hashlib
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from unittest import mock

from local.aws.functions import LocalFunction
from local.aws.template import Stack
from local.designs.baselines import CheckThenWriteConsumer, PowertoolsIdempotencyConsumer
from local.emulators.apigw import DEFAULT_CALLER_ARN
from local.emulators.pipe import TargetFailed
from local.workload.traffic import ApiCaller, ApiResponse
from rideonce.dal.consumer import Applied, ApplyResult, EffectStore
from rideonce.dal.idempotency import IdempotencyStore
from rideonce.dal.rides import RideStore
from rideonce.logic import idempotency, rides
from rideonce.logic.consumer import charge_for
from rideonce.logic.errors import RequestInFlightError
from rideonce.logic.events import event_identity
from rideonce.models.consumer import ProcessedKey
from rideonce.models.events import REJECTION_EVENT_TYPE, OutboxRecord, RideEvent
from rideonce.models.idempotency import IdempotencyRecord
from rideonce.models.requests import AcceptRideRequest, CancelRideRequest, CompleteRideRequest, CreateRideRequest
from rideonce.models.ride import Money, Ride
from rideonce.services.rides import Outcome, RideService, WriteRequest

if TYPE_CHECKING:
    from rideonce.logic.rides import Change


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


def _replace(target: object, method: str, replacement: Callable[..., Any]) -> None:
    """Shadow a method with an instance attribute: only this object changes, its class and the others do not."""
    setattr(target, method, replacement)


# ---------------------------------------------------------------- two at once

PRIMARY = "primary"
SECOND = "second"


class Turnstile:
    """Two concurrent callers of one request or one message, lined up: both check before either writes.

    The primary checks first, then the second; then the primary writes first, then the second: the
    interleaving that breaks a check-then-write design, made certain and repeatable instead of left to the
    scheduler (so a run replays exactly, and in-process calls, which never yield the GIL mid-request, still
    interleave). A caller that leaves early (it crashed, its message was poison, it had nothing to write)
    releases the other.
    """

    READ = "read"
    WRITE = "write"

    def __init__(self, timeout_seconds: float = 30.0) -> None:
        self._condition = threading.Condition()
        self._done: set[tuple[str, str]] = set()
        self._timeout = timeout_seconds
        self.timed_out = False

    def passed(self, role: str, stage: str) -> bool:
        with self._condition:
            return (role, stage) in self._done

    def read[T](self, role: str, step: Callable[[], T]) -> T:
        if role == SECOND:
            self._await(PRIMARY, self.READ)
        try:
            return step()
        finally:
            self._mark(role, self.READ)
            if role == PRIMARY:
                self._await(SECOND, self.READ)

    def write[T](self, role: str, step: Callable[[], T]) -> T:
        if role == SECOND:
            self._await(PRIMARY, self.WRITE)
        try:
            return step()
        finally:
            self._mark(role, self.WRITE)

    def leave(self, role: str) -> None:
        self._mark(role, "gone")

    def after(self, role: str) -> None:
        """Wait until `role` has left."""
        self._await(role, "gone")

    def _mark(self, role: str, stage: str) -> None:
        with self._condition:
            self._done.add((role, stage))
            self._condition.notify_all()

    def _await(self, role: str, stage: str) -> None:
        with self._condition:
            if not self._condition.wait_for(
                lambda: (role, stage) in self._done or (role, "gone") in self._done, self._timeout
            ):
                self.timed_out = True


# ---------------------------------------------------------------- client -> API

SEEDED_ID_NAMESPACE = uuid.UUID("1d6f2f8e-3c0b-4b51-9a43-5f1e0c7d2b90")
CHAOS_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class SeededRideIds:
    """Ride ids derived from the seed and the create request's Idempotency-Key, so a run replays exactly.

    Every downstream decision is keyed by the event's idempotency key, which holds the ride id; random ids
    would give a replayed run another schedule. Two threads creating with one key derive the same id; the
    service's lock tokens, never seen downstream, stay random.
    """

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._local = threading.local()

    def make_id(self) -> str:
        pending: str | None = getattr(self._local, "ride_id", None)
        self._local.ride_id = None
        return pending or str(uuid.uuid4())

    def install(self, service: RideService) -> RideService:
        """Wrap the service's `create` so its first `make_id` call is the derived ride id."""
        create = service.create

        def seeded_create(request: WriteRequest, body: CreateRideRequest) -> Outcome:
            name = f"{self._seed}|{request.caller}|{request.idempotency_key}"
            self._local.ride_id = str(uuid.uuid5(SEEDED_ID_NAMESPACE, name))
            try:
                return create(request, body)
            finally:
                self._local.ride_id = None

        _replace(service, "create", seeded_create)
        return service


@contextmanager
def api_crashes_after_commit(plan: FaultPlan) -> Iterator[None]:
    """While active, `RideStore.commit` may raise a `Crash` after its transaction committed.

    The client sees no answer and retries with the same key; the key's COMPLETED record committed in the
    same transaction, so the retry must get the stored response, not a second ride change.
    """
    commit = RideStore.commit

    def crashing_commit(self: RideStore, change: "Change", record: OutboxRecord, also: Any = None) -> None:
        commit(self, change, record, also)
        subject = record.event.metadata.idempotency_key
        if plan.occurs(Fault.API_CRASH_AFTER_COMMIT, subject):
            raise Crash(Fault.API_CRASH_AFTER_COMMIT, subject)

    with mock.patch.object(RideStore, "commit", crashing_commit):
        yield


class _Caller(threading.local):
    gate: Turnstile | None = None
    role: str = PRIMARY
    in_flight: bool = True


_caller = _Caller()


@contextmanager
def lined_up_claims() -> Iterator[None]:
    """While active, the two clients of a concurrent pair claim their Idempotency-Key in a set order.

    Either both claim before the first commits (the second gets 409 in flight), or the second claims after
    the first has answered (it gets the replay); `FaultyApiCaller` picks which from the seed.
    """
    claim = IdempotencyStore.claim

    def ordered_claim(self: IdempotencyStore, record: IdempotencyRecord, now: int) -> IdempotencyRecord | None:
        gate, role = _caller.gate, _caller.role
        if gate is None or gate.passed(role, Turnstile.READ):
            return claim(self, record, now)
        if not _caller.in_flight:
            if role == SECOND:
                gate.after(PRIMARY)
            return claim(self, record, now)
        return gate.read(role, lambda: claim(self, record, now))

    with mock.patch.object(IdempotencyStore, "claim", ordered_claim):
        yield


@dataclass
class ApiFaultStats:
    handler_requests: int = 0
    """Requests sent through the handler, crashed ones included (ApiCaller.stats counts answered ones)."""
    concurrent_pairs: int = 0
    in_flight_conflicts: int = 0
    """409 Request In Flight answers to the loser of a concurrent pair (it retried and got the replay)."""
    crash_retries: int = 0
    service_requests: int = 0
    service_replays: int = 0


class FaultyApiCaller(ApiCaller):
    """An `ApiCaller` whose requests meet the client-side faults, always ending with the same ride.

    - a crash after the commit: the request raises `Crash`; the client retries with the same key and must
      get the replay (`Idempotent-Replayed: true`) with the committed ride;
    - concurrent duplicates: the same request and key go at once through the handler (this thread) and
      straight through a `RideService` (another thread; the Lambda handler object is not thread-safe). One
      wins; the other gets 409 in flight or the replay, and on 409 retries until it gets the replay. Both
      clients must end with the same ride.
    """

    def __init__(self, stack: Stack, function: LocalFunction, plan: FaultPlan, second_service: RideService) -> None:
        super().__init__(stack, function)
        self._plan = plan
        self._second = second_service
        self._seen: set[str] = set()
        self.faults = ApiFaultStats()
        self.violations: list[str] = []
        """Broken promises seen by a client: a retry that was not a replay, two clients with different rides."""

    def call(
        self, method: str, path: str, body: Any = None, key: str | None = None, headers: dict[str, str] | None = None
    ) -> ApiResponse:
        first_time = key is not None and key not in self._seen
        if key is not None:
            self._seen.add(key)
        if first_time and key is not None and method == "POST" and self._plan.occurs(Fault.CONCURRENT_REQUESTS, key):
            return self._concurrently(method, path, body, key, headers or {})
        return self._surviving(method, path, body, key, headers)

    def _surviving(
        self, method: str, path: str, body: Any, key: str | None, headers: dict[str, str] | None
    ) -> ApiResponse:
        """One request; after an injected crash, the client's retry with the same key."""
        try:
            return self._through_handler(method, path, body, key, headers)
        except Crash:
            self.faults.crash_retries += 1
            retried = self._through_handler(method, path, body, key, headers)
            if retried.headers.get("idempotent-replayed") != "true":
                self.violations.append(f"the retry after a crash of {method} {path} was not a replay")
            return retried

    def _concurrently(self, method: str, path: str, body: Any, key: str, headers: dict[str, str]) -> ApiResponse:
        """Both clients at once; with `lined_up_claims` active, in the order the seed picks for this key."""
        self.faults.concurrent_pairs += 1
        gate = Turnstile()
        in_flight = self._plan.draw(Fault.CONCURRENT_REQUESTS, key, -1) < 0.5
        second: list[ApiResponse | BaseException] = []

        def other_client() -> None:
            _caller.gate, _caller.role, _caller.in_flight = gate, SECOND, in_flight
            try:
                answer = self._via_service_until_answered(method, path, body, key, headers, retry_in_flight=False)
            except BaseException as error:  # handed to the calling thread, which raises it
                second.append(error)
            else:
                second.append(answer)
            finally:
                _caller.gate = None
                gate.leave(SECOND)

        thread = threading.Thread(target=other_client, name="concurrent-request")
        _caller.gate, _caller.role, _caller.in_flight = gate, PRIMARY, in_flight
        thread.start()
        try:
            first: ApiResponse | None = self._through_handler(method, path, body, key, headers)
        except Crash:
            self.faults.crash_retries += 1
            first = None
        finally:
            _caller.gate = None
            gate.leave(PRIMARY)
        thread.join()
        if gate.timed_out:
            self.violations.append(f"concurrent {method} {path}: the two clients never lined up (harness timeout)")
        if first is None or first.status == 409:
            self.faults.in_flight_conflicts += first is not None
            first = self._through_handler(method, path, body, key, headers)
        (other,) = second
        if isinstance(other, BaseException):
            raise other
        if other.status == 409:
            other = self._via_service_until_answered(method, path, body, key, headers, retry_in_flight=True)
        if (other.status, other.body) != (first.status, first.body):
            self.violations.append(f"concurrent {method} {path}: the two clients got different answers")
        return first

    def _through_handler(
        self, method: str, path: str, body: Any, key: str | None, headers: dict[str, str] | None
    ) -> ApiResponse:
        self.faults.handler_requests += 1
        return super().call(method, path, body, key, headers)

    def _via_service_until_answered(
        self, method: str, path: str, body: Any, key: str, headers: dict[str, str], *, retry_in_flight: bool
    ) -> ApiResponse:
        """The second client: the service called directly, surviving an injected crash like `_surviving`."""
        try:
            response = self._via_service(method, path, body, key, headers)
        except Crash:
            self.faults.crash_retries += 1
            response = self._via_service(method, path, body, key, headers)
        except RequestInFlightError:
            if retry_in_flight:
                raise
            self.faults.in_flight_conflicts += 1
            return ApiResponse(409, {}, None)
        return response

    def _via_service(self, method: str, path: str, body: Any, key: str, headers: dict[str, str]) -> ApiResponse:
        """What the handler's routes do, minus the resolver: parse the body, call the service, shape the answer."""
        request = WriteRequest(
            caller=DEFAULT_CALLER_ARN,
            idempotency_key=key,
            fingerprint=idempotency.fingerprint(method, path, body),
            traceparent=CHAOS_TRACEPARENT,
        )
        self.faults.service_requests += 1
        parts = path.strip("/").split("/")
        if parts == ["rides"]:
            outcome = self._second.create(request, CreateRideRequest.model_validate(body))
        else:
            _, ride_id, action = parts
            outcome = self._second.transition(request, ride_id, headers.get("If-Match"), _transition(action, body))
        self.faults.service_replays += outcome.replayed
        stored = outcome.response
        return ApiResponse(
            stored.status_code,
            {name.lower(): value for name, value in stored.headers.items()},
            json.loads(stored.body) if stored.body else None,
        )


def _transition(action: str, body: Any) -> Callable[[Ride, Any, int | None], "Change"]:
    """The domain function each transition route calls, with the body parsed by its request model."""
    if action == "accept":
        driver = AcceptRideRequest.model_validate(body).driver_id
        return lambda ride, now, expected: rides.accept(ride, driver, now, expected)
    if action == "start":
        return rides.start
    if action == "complete":
        fare: Money = CompleteRideRequest.model_validate(body).fare
        return lambda ride, now, expected: rides.complete(ride, fare, now, expected)
    if action == "cancel":
        reason = CancelRideRequest.model_validate(body or {}).reason
        return lambda ride, now, expected: rides.cancel(ride, reason, now, expected)
    raise ValueError(f"no ride action {action!r}")


# ---------------------------------------------------------------- stream -> Pipe -> bus


def record_subject(record: Mapping[str, Any]) -> str:
    """A stream record's subject: the idempotency key of the outbox row (rideId, version) it carries."""
    keys = record.get("dynamodb", {}).get("Keys", {})
    ride_id = str(keys.get("rideId", {}).get("S", "?"))
    version = int(keys.get("version", {}).get("N", "0"))
    return event_identity(ride_id, version).idempotency_key


def entry_subject(entry: Mapping[str, Any]) -> str:
    """A PutEvents entry's subject: a ride event's idempotency key, or the outbox row a rejection carries.

    Not a rejection's own key: that holds the stream's eventID, which differs from run to run.
    """
    try:
        detail = json.loads(entry["Detail"])
        if detail["metadata"].get("eventType") == REJECTION_EVENT_TYPE:
            return f"rejected#{record_subject(detail['data']['record'])}"
        return str(detail["metadata"]["idempotencyKey"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return hashlib.sha256(str(entry.get("Detail")).encode()).hexdigest()


@dataclass
class PutCall:
    """One PutEvents call that reached the bus: when (wall clock, around the call) and how many entries."""

    started: float
    ended: float
    entries: int


class FaultyEventBridge:
    """The Pipe's EventBridge client, with PutEvents faults; every other call passes through.

    - partial failure: one entry (picked by the seed) is reported failed and not put, the others are put,
      so the Pipe re-runs the remainder through the enrichment; the template's enrichment tags no item
      with its record's eventID, so the remainder is the whole batch and its events are put again;
    - duplicate: an accepted entry is put once more, the same detail under a new EventBridge id.
    """

    def __init__(self, client: Any, plan: FaultPlan, clock: Callable[[], float]) -> None:
        self._client = client
        self._plan = plan
        self._clock = clock
        self.calls: list[PutCall] = []
        self.duplicates_put = 0
        self.failed_entries = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_events(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        subject = entry_subject(Entries[0])
        if self._plan.occurs(Fault.PUT_EVENTS_PARTIAL_FAILURE, subject):
            failed = int(self._plan.draw(Fault.PUT_EVENTS_PARTIAL_FAILURE, subject, -1) * len(Entries))
            sent = [entry for index, entry in enumerate(Entries) if index != failed]
            results = list(self._put(sent)["Entries"]) if sent else []
            results.insert(failed, {"ErrorCode": "InternalFailure", "ErrorMessage": "injected partial failure"})
            self.failed_entries += 1
            return {"FailedEntryCount": sum(1 for result in results if result.get("ErrorCode")), "Entries": results}
        response = self._put(Entries)
        for entry, result in zip(Entries, response["Entries"], strict=True):
            if result.get("EventId") and self._plan.occurs(Fault.PUT_EVENTS_DUPLICATE, entry_subject(entry)):
                self._put([entry])
                self.duplicates_put += 1
        return response

    def _put(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        started = self._clock()
        response: dict[str, Any] = self._client.put_events(Entries=entries)
        self.calls.append(PutCall(started, self._clock(), len(entries)))
        return response


class FaultyStreams:
    """The Pipe's DynamoDB Streams client, with records trimmed before the Pipe read them.

    DynamoDB Streams keep a record 24 hours; a Pipe that falls further behind never reads what was trimmed
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Streams.html). A real trim takes the
    oldest records of a shard; here the seed picks records anywhere, decided once per record, so a record
    read again (a fresh iterator) stays gone. For the repair it is the same: the change never reaches the bus.
    """

    def __init__(self, client: Any, plan: FaultPlan) -> None:
        self._client = client
        self._plan = plan
        self._decided: dict[str, bool] = {}
        self.trimmed: dict[str, str] = {}
        """Subject -> sequence number of every record trimmed."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_records(self, **kwargs: Any) -> dict[str, Any]:
        page: dict[str, Any] = self._client.get_records(**kwargs)
        kept = []
        for record in page["Records"]:
            sequence = str(record["dynamodb"]["SequenceNumber"])
            subject = record_subject(record)
            if sequence not in self._decided:
                self._decided[sequence] = self._plan.occurs(Fault.STREAM_TRIMMED, subject)
            if self._decided[sequence]:
                self.trimmed[subject] = sequence
            else:
                kept.append(record)
        return {**page, "Records": kept}


class RelayFaults:
    """The faults at a `PipeRunner`'s target, through its `around_delivery` seam, and its streams client.

    - a batch delivered again: after a delivery, the same batch is enriched and put once more;
    - a batch given up: at a batch's first attempt the seed may doom its records; every attempt holding a
      doomed record then fails (`TargetFailed`), so the Pipe bisects, retries each record
      MaximumRetryAttempts times and sends a pointer per record to its dead-letter queue, as on AWS when
      the bus keeps refusing. The records never reach the bus.
    """

    def __init__(self, plan: FaultPlan, streams: Any) -> None:
        self._plan = plan
        self.streams = FaultyStreams(streams, plan)
        self.again = 0
        self.given_up: dict[str, str] = {}
        """Subject -> sequence number of every record in a batch the Pipe gave up on."""
        self._heads: set[str] = set()

    @property
    def trimmed(self) -> dict[str, str]:
        return self.streams.trimmed

    def around_delivery(self, records: list[dict[str, Any]], deliver: Callable[[], None]) -> None:
        if not records:
            deliver()
            return
        subjects = [record_subject(record) for record in records]
        if any(subject in self.given_up for subject in subjects):
            raise TargetFailed("injected: the bus refuses every attempt of this batch")
        head = subjects[0]
        if head not in self._heads:
            self._heads.add(head)
            if self._plan.occurs(Fault.PIPE_GIVES_UP, head):
                for subject, record in zip(subjects, records, strict=True):
                    self.given_up[subject] = str(record["dynamodb"]["SequenceNumber"])
                raise TargetFailed("injected: the bus refuses every attempt of this batch")
        deliver()
        if self._plan.occurs(Fault.PIPE_BATCH_AGAIN, head):
            self.again += 1
            deliver()


# ---------------------------------------------------------------- queue -> consumer


class ConsumerContext(threading.local):
    """Per thread: which message is being handled, by which of two concurrent consumers, under which gate.

    `faults_allowed` is cleared for a delivery on one of a message's last two receives before the DLQ, so
    that a message parks only when the consumer itself keeps refusing it (see chaos.py).
    """

    subject: str = ""
    role: str = PRIMARY
    gate: "Turnstile | None" = None
    faults_allowed: bool = True

    def key(self) -> str:
        """The fault subject: the second consumer of a message has attempts of its own (threads race)."""
        return self.subject if self.role == PRIMARY else f"{self.subject}#{SECOND}"


@dataclass
class EffectLog:
    """Every effect write a design made, in order, recorded by wrappers on its effect writers.

    The order check reads this, not timestamps: it is what was actually applied, and when.
    """

    projections: list[tuple[str, int]] = field(default_factory=list)
    charges: list[tuple[str, int, Decimal]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def projection(self, event: RideEvent) -> None:
        with self._lock:
            self.projections.append((event.data.ride_id, event.data.version))

    def charge(self, event: RideEvent, amount: Decimal) -> None:
        with self._lock:
            self.charges.append((event.data.ride_id, event.data.version, amount))


def crash_after[T](plan: FaultPlan, context: ConsumerContext, fault: Fault, step: Callable[..., T]) -> Callable[..., T]:
    """`step`, then maybe a `Crash`: the point between `step` and whatever the design does next."""

    def stepped(*args: Any, **kwargs: Any) -> T:
        result = step(*args, **kwargs)
        if context.faults_allowed and plan.occurs(fault, context.key()):
            raise Crash(fault, context.key())
        return result

    return stepped


def gated[T](context: ConsumerContext, stage: str, step: Callable[..., T]) -> Callable[..., T]:
    """`step` through the thread's turnstile at `stage`, the first time only (a second read is free)."""

    def through(*args: Any, **kwargs: Any) -> T:
        gate = context.gate
        if gate is None or gate.passed(context.role, stage):
            return step(*args, **kwargs)
        passage = gate.read if stage == Turnstile.READ else gate.write
        return passage(context.role, lambda: step(*args, **kwargs))

    return through


def instrument_rideonce(store: EffectStore, plan: FaultPlan, context: ConsumerContext, log: EffectLog) -> None:
    """Our consumer's one step: one transaction that checks, applies and records together.

    Its check is that transaction, so the crash after the check follows it on every delivery, as the
    other designs' crash after their read does; the crash after the effect and the crash after the record
    are one point here, decided only when the transaction applied (as theirs, after a first application).
    So this design meets the same schedule.
    """
    apply = store.apply

    def recorded_apply(event: RideEvent, key: ProcessedKey, charge: Money | None, now: int) -> Applied:
        applied = apply(event, key, charge, now)
        if applied.result is ApplyResult.APPLIED:
            log.projection(event)
            if charge is not None:
                log.charge(event, charge.amount)
        return applied

    def apply_then_maybe_crash(event: RideEvent, key: ProcessedKey, charge: Money | None, now: int) -> Applied:
        applied = recorded_apply(event, key, charge, now)
        if context.faults_allowed:
            crashes = [Fault.CRASH_AFTER_READ]
            if applied.result is ApplyResult.APPLIED:
                crashes += [Fault.CRASH_AFTER_EFFECT, Fault.CRASH_AFTER_RECORD]
            for fault in crashes:
                if plan.occurs(fault, context.key()):
                    raise Crash(fault, context.key())
        return applied

    _replace(store, "apply", gated(context, Turnstile.WRITE, apply_then_maybe_crash))


def _record_effects(
    consumer: CheckThenWriteConsumer | PowertoolsIdempotencyConsumer,
    plan: FaultPlan,
    context: ConsumerContext,
    log: EffectLog,
) -> None:
    """The baselines' effect writers, recorded, with the crash between the projection and the charge."""
    put = consumer._put_projection
    charge = consumer._charge

    def recorded_put(event: RideEvent) -> None:
        put(event)
        log.projection(event)

    def recorded_charge(event: RideEvent) -> None:
        charge(event)
        money = charge_for(event)
        if money is not None:
            log.charge(event, money.amount)

    _replace(consumer, "_put_projection", crash_after(plan, context, Fault.CRASH_MID_EFFECT, recorded_put))
    _replace(consumer, "_charge", recorded_charge)
    effects = crash_after(plan, context, Fault.CRASH_AFTER_EFFECT, consumer._apply_effects)
    _replace(consumer, "_apply_effects", gated(context, Turnstile.WRITE, effects))


def instrument_check_then_write(
    consumer: CheckThenWriteConsumer, plan: FaultPlan, context: ConsumerContext, log: EffectLog
) -> None:
    """Check-then-write's steps: read the key, project, charge, record the key: four requests."""
    _record_effects(consumer, plan, context, log)
    read = crash_after(plan, context, Fault.CRASH_AFTER_READ, consumer._read_key)
    _replace(consumer, "_read_key", gated(context, Turnstile.READ, read))
    record = crash_after(plan, context, Fault.CRASH_AFTER_RECORD, consumer._record_key)
    _replace(consumer, "_record_key", record)


def instrument_powertools(
    consumer: PowertoolsIdempotencyConsumer, plan: FaultPlan, context: ConsumerContext, log: EffectLog
) -> None:
    """Powertools' steps: the INPROGRESS lock (its check), project, charge, the COMPLETED update."""
    _record_effects(consumer, plan, context, log)
    persistence = consumer.persistence
    lock = crash_after(plan, context, Fault.CRASH_AFTER_READ, persistence.save_inprogress)
    _replace(persistence, "save_inprogress", gated(context, Turnstile.READ, lock))
    success = crash_after(plan, context, Fault.CRASH_AFTER_RECORD, persistence.save_success)
    _replace(persistence, "save_success", success)
