"""Powertools idempotency alone, as its documentation teaches it: a teaching baseline. Never deployed.

Its steps: the INPROGRESS lock (its check: a conditional PutItem), project, charge, the COMPLETED update
(its proof), with the crash points between them declared to its `Steps` (the lock and the update through
its persistence layer, a subclass of Powertools' own).
"""

import importlib
import types
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any, Self, cast
from unittest import mock

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from local.aws.context import FakeLambdaContext
from local.designs.effects import SeparateEffects
from local.designs.steps import NO_STEPS, CrashPoint, Steps
from rideonce.logic.consumer import Verdict
from rideonce.models.events import RideEvent

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_dynamodb import DynamoDBClient

    from local.designs import Kit

CONSUMER_TIMEOUT_SECONDS = 20
"""template.yaml's ConsumerFunction Timeout: how long a Lambda invocation, and so a Powertools lock, lives."""

POWERTOOLS_KEY_ATTRIBUTE = "id"
"""The partition key (type S) of Powertools' default idempotency table schema."""


class SteppedPersistence(DynamoDBPersistenceLayer):
    """Powertools' DynamoDB persistence layer, its lock and its COMPLETED update announced to the steps."""

    def __init__(self, steps: Steps, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._steps = steps

    def save_inprogress(self, data: dict[str, Any], remaining_time_in_millis: int | None = None) -> None:
        lock = super().save_inprogress
        self._steps.check(lambda: lock(data, remaining_time_in_millis))
        self._steps.reached(CrashPoint.AFTER_CHECK)

    def save_success(self, data: dict[str, Any], result: dict[str, Any]) -> None:
        super().save_success(data, result)
        self._steps.reached(CrashPoint.AFTER_RECORD)


def _replayed(response: Any, idempotent_data: "DataRecord") -> dict[str, str]:
    """Powertools' response hook runs only when it answers from a COMPLETED record: that is a duplicate."""
    return {"verdict": Verdict.DUPLICATE.value}


class PowertoolsIdempotencyConsumer(SeparateEffects):
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
        steps: Steps = NO_STEPS,
    ) -> None:
        super().__init__(client, projection_table, accounts_table, steps)
        self._new_context = new_context
        self.persistence = SteppedPersistence(
            steps, table_name=idempotency_table, key_attr=POWERTOOLS_KEY_ATTRIBUTE, boto3_client=client
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
        """The idempotent function: the effects, as separate requests."""
        self._steps.write(lambda: self._apply_effects(event))
        self._steps.reached(CrashPoint.AFTER_EFFECT)
        return {"verdict": Verdict.APPLY.value}


def build(kit: "Kit") -> PowertoolsIdempotencyConsumer:
    """On its own idempotency table, created by the first instance (Powertools' default schema)."""
    client = kit.client()
    table = f"{kit.table_prefix}-PowertoolsIdempotencyTable"
    if table not in client.list_tables()["TableNames"]:
        client.create_table(
            TableName=table,
            AttributeDefinitions=[{"AttributeName": POWERTOOLS_KEY_ATTRIBUTE, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": POWERTOOLS_KEY_ATTRIBUTE, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    return PowertoolsIdempotencyConsumer(
        client, table, kit.tables.projection, kit.tables.accounts, kit.key_ttl_seconds, steps=kit.steps
    )


@contextmanager
def powertools_on(now: Callable[[], float]) -> Iterator[None]:
    """Powertools idempotency reads `datetime.now()` for its lock and record expiries: give it another clock.

    Powertools takes no clock, so its modules' `dt` is replaced while this is active. Without it the
    in-progress lock of a crashed invocation (20 s) would still be held when the message comes back
    "120 s" later in simulated time, which is not what happens in AWS.
    """

    class SimDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Self:
            return cls.fromtimestamp(now(), tz)

    shim = types.ModuleType("datetime")
    shim.__dict__.update(vars(importlib.import_module("datetime")))
    shim.datetime = SimDatetime  # type: ignore[attr-defined]
    modules = (
        "aws_lambda_powertools.utilities.idempotency.base",
        "aws_lambda_powertools.utilities.idempotency.persistence.base",
        "aws_lambda_powertools.utilities.idempotency.persistence.dynamodb",
        "aws_lambda_powertools.utilities.idempotency.persistence.datarecord",
    )
    with ExitStack() as patches:
        for name in modules:
            patches.enter_context(mock.patch.object(importlib.import_module(name), "dt", shim))
        yield
