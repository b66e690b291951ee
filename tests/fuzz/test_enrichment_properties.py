"""Hypothesis on the Pipe enrichment: any stream record gives one result that EventBridge will take."""

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as event_label
from hypothesis import strategies as st

from local.aws.context import FakeLambdaContext
from rideonce.handlers import enrichment
from rideonce.logic.enrichment import MAX_DETAIL_BYTES, NotAChange, detail_bytes, enrich_batch
from rideonce.models.events import RecordRejected, RideEvent
from tests.fuzz.strategies import JSON, broken
from tests.unit.test_enrichment import lifecycle, stream_record

pytestmark = pytest.mark.fuzz

VALID = [stream_record(change, sequence) for sequence, change in enumerate(lifecycle("ride-fuzz"), start=1)]
BIG_TEXT = st.integers(min_value=100_000, max_value=300_000).map(lambda size: "\u00e9" * size)
RECORDS = (
    st.sampled_from(VALID)
    | st.sampled_from(VALID).flatmap(broken)
    | JSON
    | st.sampled_from(VALID).flatmap(lambda record: st.builds(lambda text: {**record, "eventName": text}, BIG_TEXT))
    | st.builds(lambda text: {"eventID": text[:5000], "junk": text}, BIG_TEXT)
)


@settings(max_examples=100, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(RECORDS, min_size=1, max_size=4))
def test_every_record_becomes_one_event_that_fits_an_eventbridge_entry(batch: list[Any]) -> None:
    # When the Pipe hands the batch to the function
    output = enrichment.handler(batch, FakeLambdaContext(function_name="EnrichmentFunction"))  # type: ignore[arg-type]
    # Then one result per record, in order, each a ride event or a rejection that fits one entry; a record
    # that is no change (MODIFY, REMOVE) forwards nothing
    results = enrich_batch(batch)
    assert len(output) == len([result for result in results if not isinstance(result, NotAChange)])
    for record, result in zip(batch, results, strict=True):
        event_label(type(result).__name__)
        if isinstance(result, NotAChange):
            continue
        assert detail_bytes(result) <= MAX_DETAIL_BYTES
        if record in VALID:
            assert isinstance(result, RideEvent)
        if isinstance(result, RecordRejected) and result.data.record != record:
            event_label("truncated")
            assert result.data.record["truncated"] is True  # type: ignore[index,call-overload]
    # And the same batch gives the same bytes again (the Pipe re-runs batches)
    assert json.dumps(enrichment.handler(batch, FakeLambdaContext())) == json.dumps(output)  # type: ignore[arg-type]
