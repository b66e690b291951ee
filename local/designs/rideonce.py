"""rideonce's own consumer, as deployed, with its one transaction announced to a design's `Steps`.

`RideEventConsumer` is handed an `EffectStore`; here it is handed one whose `apply` (the one request that
checks, applies and records at once) runs through the steps. So a harness meets the same crash points
as in the other designs: after the check (here that transaction, on every delivery) and, when the
transaction applied, after the effect and after the record, which are one point here.
"""

from typing import TYPE_CHECKING

from local.designs.steps import CrashPoint, Steps
from rideonce.dal.consumer import Applied, ApplyResult, EffectStore
from rideonce.models.consumer import ProcessedKey
from rideonce.models.events import RideEvent
from rideonce.models.ride import Money
from rideonce.services.consumer import RideEventConsumer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from local.designs import Kit


class SteppedEffectStore(EffectStore):
    def __init__(
        self,
        client: "DynamoDBClient",
        processed_keys_table: str,
        projection_table: str,
        accounts_table: str,
        steps: Steps,
    ) -> None:
        super().__init__(client, processed_keys_table, projection_table, accounts_table)
        self._steps = steps

    def apply(self, event: RideEvent, key: ProcessedKey, charge: Money | None, now: int) -> Applied:
        transact = super().apply
        applied = self._steps.write(lambda: transact(event, key, charge, now))
        took_effect = applied.result is ApplyResult.APPLIED
        if took_effect:
            self._steps.projected(event)
            if charge is not None:
                self._steps.charged(event, charge.amount)
        self._steps.reached(CrashPoint.AFTER_CHECK)
        if took_effect:
            self._steps.reached(CrashPoint.AFTER_EFFECT)
            self._steps.reached(CrashPoint.AFTER_RECORD)
        return applied


def build(kit: "Kit") -> RideEventConsumer:
    tables = kit.tables
    store = SteppedEffectStore(kit.client(), tables.processed_keys, tables.projection, tables.accounts, kit.steps)
    return RideEventConsumer(store, kit.key_ttl_seconds, clock=kit.clock)
