"""Each function's environment as one pydantic model, validated once at cold start.

A missing or malformed variable fails the first invocation with a message naming it, instead of a
KeyError deep inside a request.
"""

import os
from collections.abc import Mapping
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    # Built by the first from_env, so a function never builds the settings of the others.
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True, defer_build=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        return cls.model_validate(dict(os.environ if environ is None else environ))


class ApiSettings(Settings):
    rides_table_name: Annotated[str, Field(alias="RIDES_TABLE_NAME", min_length=1)]
    outbox_table_name: Annotated[str, Field(alias="OUTBOX_TABLE_NAME", min_length=1)]
    idempotency_table_name: Annotated[str, Field(alias="IDEMPOTENCY_TABLE_NAME", min_length=1)]
    idempotency_key_ttl_seconds: Annotated[int, Field(alias="IDEMPOTENCY_KEY_TTL_SECONDS", ge=60)] = 86_400
    # At least the function timeout: a request still running must never lose its key to a retry.
    idempotency_lock_seconds: Annotated[int, Field(alias="IDEMPOTENCY_LOCK_SECONDS", ge=1)] = 30
    outbox_retention_seconds: Annotated[int, Field(alias="OUTBOX_RETENTION_SECONDS", ge=3_600)] = 7 * 86_400
    max_body_bytes: Annotated[int, Field(alias="MAX_BODY_BYTES", ge=256)] = 16_384


class ConsumerSettings(Settings):
    processed_keys_table_name: Annotated[str, Field(alias="PROCESSED_KEYS_TABLE_NAME", min_length=1)]
    ride_projection_table_name: Annotated[str, Field(alias="RIDE_PROJECTION_TABLE_NAME", min_length=1)]
    rider_accounts_table_name: Annotated[str, Field(alias="RIDER_ACCOUNTS_TABLE_NAME", min_length=1)]
    # Longer than the archive's retention, so a replay of anything still archived meets its key.
    processed_key_ttl_seconds: Annotated[int, Field(alias="PROCESSED_KEY_TTL_SECONDS", ge=3_600)] = 35 * 86_400
    # The queue's maxReceiveCount and the reconciler's schedule: how long an early event may wait for a
    # predecessor the relay lost before it is parked (logic/consumer.py, `EarlyRetries`).
    max_receive_count: Annotated[int, Field(alias="MAX_RECEIVE_COUNT", ge=2)]
    reconcile_period_minutes: Annotated[int, Field(alias="RECONCILE_PERIOD_MINUTES", ge=1)]
    reconcile_grace_minutes: Annotated[int, Field(alias="RECONCILE_GRACE_MINUTES", ge=1)]


class ReconcilerSettings(Settings):
    outbox_table_name: Annotated[str, Field(alias="OUTBOX_TABLE_NAME", min_length=1)]
    outbox_commit_index_name: Annotated[str, Field(alias="OUTBOX_COMMIT_INDEX_NAME", min_length=1)]
    ride_projection_table_name: Annotated[str, Field(alias="RIDE_PROJECTION_TABLE_NAME", min_length=1)]
    event_bus_name: Annotated[str, Field(alias="EVENT_BUS_NAME", min_length=1)]
    # The Pipe target's static Source and DetailType: republished events must look like relayed ones.
    relay_event_source: Annotated[str, Field(alias="RELAY_EVENT_SOURCE", min_length=1)]
    relay_detail_type: Annotated[str, Field(alias="RELAY_DETAIL_TYPE", min_length=1)]
    reconcile_period_minutes: Annotated[int, Field(alias="RECONCILE_PERIOD_MINUTES", ge=1)]
    # Long enough that a change still on its way through the Pipe, the bus and the queue is not judged.
    reconcile_grace_minutes: Annotated[int, Field(alias="RECONCILE_GRACE_MINUTES", ge=1)]
