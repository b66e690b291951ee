"""The tutorial consumer design, check-then-write: a teaching baseline to measure ours against. Never deployed.

Its steps: GetItem the processed key (the check), project, charge, PutItem the key (the proof): four
requests, with the crash points between them declared to its `Steps`.
"""

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from local.designs.effects import SeparateEffects
from local.designs.steps import NO_STEPS, CrashPoint, Steps
from rideonce.dal.dynamo import to_item
from rideonce.logic.consumer import Verdict, processed_key
from rideonce.models.events import RideEvent
from rideonce.services.clock import utc_now

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from local.designs import Kit


class CheckThenWriteConsumer(SeparateEffects):
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
        steps: Steps = NO_STEPS,
    ) -> None:
        super().__init__(client, projection_table, accounts_table, steps)
        self._keys = processed_keys_table
        self._key_ttl_seconds = key_ttl_seconds
        self._clock = clock

    def handle(self, event: RideEvent) -> Verdict:
        """DUPLICATE when a live key was found; otherwise apply, record the key and say APPLY."""
        found = self._steps.check(lambda: self._read_key(event))
        self._steps.reached(CrashPoint.AFTER_CHECK)
        if found:
            return Verdict.DUPLICATE
        self._steps.write(lambda: self._apply_effects(event))
        self._steps.reached(CrashPoint.AFTER_EFFECT)
        self._record_key(event)
        self._steps.reached(CrashPoint.AFTER_RECORD)
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
        key = processed_key(event, self._clock(), self._key_ttl_seconds)
        self._client.put_item(TableName=self._keys, Item=to_item(key))


def build(kit: "Kit") -> CheckThenWriteConsumer:
    return CheckThenWriteConsumer(
        kit.client(),
        kit.tables.processed_keys,
        kit.tables.projection,
        kit.tables.accounts,
        kit.key_ttl_seconds,
        clock=kit.clock,
        steps=kit.steps,
    )
