"""The consumer's effects as plain, separate requests: exactly the writes ours puts in its one transaction.

Both usual designs (check_then_write.py, powertools.py) apply the same effects as
`rideonce.services.consumer.RideEventConsumer` on the same tables: the ride projection put, and on
RideCompleted the same non-idempotent `ADD chargedEUR :amount, chargeCount :one` charge. What they lack
is the one thing ours is built on: the proof that an event was applied commits in the same request as
its effects. Each writes its effects and its proof in separate requests, so an invocation that dies
between them (a timeout, an out-of-memory kill, a lost connection) leaves the effect without the proof,
and the redelivery that SQS is guaranteed to make applies the effect again: the rider is charged twice.
"""

from typing import TYPE_CHECKING

from local.designs.steps import NO_STEPS, CrashPoint, Steps
from rideonce.dal.dynamo import to_item, to_value
from rideonce.logic.consumer import charge_for
from rideonce.models.events import RideEvent

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class SeparateEffects:
    """Projection, then charge: two requests, either may be the last one an invocation made."""

    def __init__(
        self, client: "DynamoDBClient", projection_table: str, accounts_table: str, steps: Steps = NO_STEPS
    ) -> None:
        self._client = client
        self._projection = projection_table
        self._accounts = accounts_table
        self._steps = steps

    def _apply_effects(self, event: RideEvent) -> None:
        self._put_projection(event)
        self._steps.projected(event)
        self._steps.reached(CrashPoint.MID_EFFECT)
        self._charge(event)

    def _put_projection(self, event: RideEvent) -> None:
        # Unconditional, as tutorials write it: it also lets an older event overwrite a newer projection,
        # a second gap of these designs (no version order) that chaos measures as order violations.
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
        self._steps.charged(event, charge.amount)
