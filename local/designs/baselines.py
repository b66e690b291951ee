"""Two usual consumer designs, kept as teaching baselines to measure ours against. Do not deploy them.

Both apply the same effects as `rideonce.services.consumer.RideEventConsumer` on the same tables (the
ride projection put, and on RideCompleted the same non-idempotent `ADD chargedEUR :amount, chargeCount :one`
charge) and offer the same record-level interface, `handle(event) -> Verdict`. What they lack is the one
thing ours is built on: the proof that an event was applied commits in the same request as its effects.
Each baseline writes its effects and its proof in separate requests, so an invocation that dies between
them (a timeout, an out-of-memory kill, a lost connection) leaves the effect without the proof, and the
redelivery that SQS is guaranteed to make applies the effect again: the rider is charged twice.

Every step is its own method, so a chaos harness can wrap any of them (on the instance or the class)
to inject a crash between two requests, the same way for all three designs:

- ours: `EffectStore.apply`, the one transaction that checks, applies and records;
- `CheckThenWriteConsumer`: `_read_key`, `_apply_effects` (`_put_projection`, `_charge`), `_record_key`;
- `PowertoolsIdempotencyConsumer`: `persistence.save_inprogress` (the lock), `_apply_effects`
  (`_put_projection`, `_charge`), `persistence.save_success` (COMPLETED).

A crash is modelled by raising a `BaseException` subclass: like a killed process, nothing catches it.
"""

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from local.aws.context import FakeLambdaContext
from rideonce.dal.dynamo import to_item, to_value
from rideonce.logic.consumer import Verdict, charge_for
from rideonce.models.consumer import ProcessedKey
from rideonce.models.events import RideEvent
from rideonce.services.clock import utc_now

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_dynamodb import DynamoDBClient

CONSUMER_TIMEOUT_SECONDS = 20
"""template.yaml's ConsumerFunction Timeout: how long a Lambda invocation, and so a Powertools lock, lives."""

POWERTOOLS_KEY_ATTRIBUTE = "id"
"""The partition key (type S) of Powertools' default idempotency table schema."""


class RecordConsumer(Protocol):
    """What all three designs offer a record handler or a chaos harness: one parsed event in, a verdict out."""

    def handle(self, event: RideEvent) -> Verdict: ...


class _SeparateEffects:
    """The consumer's effects as plain, separate requests: exactly the writes ours puts in its transaction."""

    def __init__(self, client: "DynamoDBClient", projection_table: str, accounts_table: str) -> None:
        self._client = client
        self._projection = projection_table
        self._accounts = accounts_table

    def _apply_effects(self, event: RideEvent) -> None:
        """Project the ride, then charge on completion: two requests, either may be the last one made."""
        self._put_projection(event)
        self._charge(event)

    def _put_projection(self, event: RideEvent) -> None:
        # Unconditional, as tutorials write it: it also lets an older event overwrite a newer projection,
        # a second gap of these designs (no version order) that the measurements here do not exercise.
        self._client.put_item(TableName=self._projection, Item=to_item(event.data))

    def _charge(self, event: RideEvent) -> None:
        charge = charge_for(event)
        if charge is None:
            return
        # The same plain increment our dal uses: applied twice, it charges twice.
        self._client.update_item(
            TableName=self._accounts,
            Key={"riderId": {"S": event.data.rider_id}},
            UpdateExpression="ADD #charged :amount, #charges :one",
            ExpressionAttributeNames={"#charged": f"charged{charge.currency}", "#charges": "chargeCount"},
            ExpressionAttributeValues={":amount": to_value(charge.amount), ":one": to_value(1)},
        )


class CheckThenWriteConsumer(_SeparateEffects):
    """The tutorial design: GetItem the processed key; if absent, apply the effects, then PutItem the key.

    What it gets wrong: the check, the effects and the key are separate requests, and nothing makes them
    one. A crash after the charge and before the key's PutItem leaves a charged rider and no key, so the
    redelivery reads "absent" and charges again. Two consumers holding the same message at once (a
    visibility timeout that ran out mid-call, a rule that fired twice) both read "absent" before either
    writes, and both charge. Swapping the order (key first, effects after) trades the double charge for a
    lost one: a crash between them leaves a key that drops every redelivery of an effect that never
    happened. Strongly consistent reads, used here, do not help: the gap is between requests, not replicas.
    """

    def __init__(
        self,
        client: "DynamoDBClient",
        processed_keys_table: str,
        projection_table: str,
        accounts_table: str,
        key_ttl_seconds: int,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__(client, projection_table, accounts_table)
        self._keys = processed_keys_table
        self._key_ttl_seconds = key_ttl_seconds
        self._clock = clock

    def handle(self, event: RideEvent) -> Verdict:
        """DUPLICATE when a live key was found; otherwise apply, record the key and say APPLY."""
        if self._read_key(event):
            return Verdict.DUPLICATE
        self._apply_effects(event)
        self._record_key(event)
        return Verdict.APPLY

    def _read_key(self, event: RideEvent) -> bool:
        """Whether a live (unexpired) processed key exists; an expired, undeleted one counts as absent, as in ours."""
        item = self._client.get_item(
            TableName=self._keys,
            Key={"idempotencyKey": {"S": event.metadata.idempotency_key}},
            ProjectionExpression="expiresAt",
            ConsistentRead=True,
        ).get("Item")
        return item is not None and int(item["expiresAt"]["N"]) > int(self._clock().timestamp())

    def _record_key(self, event: RideEvent) -> None:
        now = self._clock()
        key = ProcessedKey(
            idempotency_key=event.metadata.idempotency_key,
            ride_id=event.data.ride_id,
            version=event.data.version,
            event_type=event.metadata.event_type,
            processed_at=now,
            expires_at=int(now.timestamp()) + self._key_ttl_seconds,
        )
        self._client.put_item(TableName=self._keys, Item=to_item(key))


def _replayed(response: Any, idempotent_data: "DataRecord") -> dict[str, str]:
    """Powertools' response hook runs only when it answers from a COMPLETED record: that is a duplicate."""
    return {"verdict": Verdict.DUPLICATE.value}


class PowertoolsIdempotencyConsumer(_SeparateEffects):
    """Powertools idempotency alone: `idempotent_function` with `DynamoDBPersistenceLayer`, keyed on
    `metadata.idempotencyKey`, around a function that applies the effects as separate requests.

    Its protocol is a lease, not a commit: a conditional PutItem writes an INPROGRESS record (the lock),
    the function runs, an UpdateItem marks the record COMPLETED. What it gets wrong for a non-idempotent
    effect: the lock and the effect are not atomic. If the invocation dies after the charge and before the
    COMPLETED update, the record stays INPROGRESS until its in-progress expiry (the invocation's remaining
    time when it took the lock, once `register_lambda_context` was called, as here and as the Powertools
    docs tell users to), and the next delivery after that takes the lock again and charges again. The
    template's queue makes that certain rather than unlucky: its visibility timeout (120 s) is longer than
    the function's timeout (20 s), as AWS recommends, so SQS redelivers only after the lock has expired.
    Without a registered context there is no in-progress expiry: the message is refused as "in progress"
    until the whole record expires (`expires_after_seconds`) or the message reaches the DLQ, and a redrive
    after that charges again. An ordinary exception raised after the charge is worse still: Powertools
    deletes the INPROGRESS record, so the very next retry charges again. Powertools idempotency makes a
    handler's *response* replayable; it cannot make a side effect that it does not own exactly-once.

    One instance serves one invocation at a time, as a Lambda execution environment does: `handle` gives
    each call a fresh Lambda context from `new_context` (one invocation per message) and registers it on
    the shared `IdempotencyConfig`. Pass a short-lived context (e.g. `FakeLambdaContext(timeout_seconds=1)`)
    to let a test outlive the lock.
    """

    def __init__(
        self,
        client: "DynamoDBClient",
        idempotency_table: str,
        projection_table: str,
        accounts_table: str,
        key_ttl_seconds: int,
        new_context: Callable[[], object] = lambda: FakeLambdaContext(
            function_name="ConsumerFunction", timeout_seconds=CONSUMER_TIMEOUT_SECONDS
        ),
    ) -> None:
        super().__init__(client, projection_table, accounts_table)
        self._new_context = new_context
        self.persistence = DynamoDBPersistenceLayer(
            table_name=idempotency_table, key_attr=POWERTOOLS_KEY_ATTRIBUTE, boto3_client=client
        )
        self.config = IdempotencyConfig(
            event_key_jmespath="metadata.idempotencyKey",
            raise_on_no_idempotency_key=True,
            # Completed records live as long as our processed keys, so both cover the same replay horizon.
            expires_after_seconds=key_ttl_seconds,
            response_hook=_replayed,
        )
        self._apply_once: Callable[..., dict[str, str]] = idempotent_function(
            self._run,
            data_keyword_argument="event",
            persistence_store=self.persistence,
            config=self.config,
        )

    def handle(self, event: RideEvent) -> Verdict:
        """APPLY when the function ran, DUPLICATE when Powertools answered from a COMPLETED record.

        Raises `IdempotencyAlreadyInProgressError` while another invocation holds the lock (the record
        handler then fails the message, and SQS retries it after its visibility timeout).
        """
        self.config.register_lambda_context(cast("LambdaContext", self._new_context()))
        return Verdict(self._apply_once(event=event)["verdict"])

    def _run(self, *, event: RideEvent) -> dict[str, str]:
        """The idempotent function: looks `_apply_effects` up on every call, so a wrapper put there applies."""
        self._apply_effects(event)
        return {"verdict": Verdict.APPLY.value}
