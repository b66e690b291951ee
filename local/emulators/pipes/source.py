"""A Pipe's DynamoDB stream source: its shards, read in order, records as the Pipe hands them on, the filter.

Every shard is read through `dynamodbstreams` (describe_stream, one iterator per shard from
StartingPosition, get_records), a parent shard to its end before its children; order is kept per shard
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-pipes-dynamodb.html). Records no filter
pattern matches are consumed, never buffered
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-pipes-event-filtering.html). A record is
handed on as JSON with what moto's records lack: `eventSourceARN`, ApproximateCreationDateTime in epoch
seconds. Not here: forming batches or delivering them (runner.py, target.py), or which filters are allowed
(config.py).
"""

import base64
import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from local.emulators.clock import Clock
from local.emulators.pipes.config import PipeConfig
from local.emulators.pipes.state import PipeStats, Shard

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_dynamodbstreams.type_defs import RecordTypeDef

GET_RECORDS_LIMIT = 1000
SHARD_REFRESH_SECONDS = 10.0


class StreamReader:
    """The shards of one pipe's stream, each read into its buffer; `shards` is what the runner batches from."""

    def __init__(self, config: PipeConfig, streams: "DynamoDBStreamsClient", clock: Clock, stats: PipeStats) -> None:
        self.config = config
        self.shards: dict[str, Shard] = {}
        self._streams = streams
        self._clock = clock
        self._stats = stats
        self._patterns = config.patterns()
        self._discovered_at = 0.0

    def refresh_if_due(self) -> None:
        """Look for new shards every SHARD_REFRESH_SECONDS of this machine's time: a stream splits its shards."""
        if time.monotonic() - self._discovered_at >= SHARD_REFRESH_SECONDS:
            self.discover(initial=False)

    def discover(self, initial: bool) -> None:
        """Track the stream's shards; ones that appear later are read from their start (they are new)."""
        self._discovered_at = time.monotonic()
        arguments: dict[str, Any] = {"StreamArn": self.config.source_arn}
        while True:
            description = self._streams.describe_stream(**arguments)["StreamDescription"]
            for shard in description.get("Shards", []):
                shard_id = shard["ShardId"]
                if shard_id in self.shards:
                    continue
                position = self.config.starting_position if initial else "TRIM_HORIZON"
                iterator = self._streams.get_shard_iterator(
                    StreamArn=self.config.source_arn,
                    ShardId=shard_id,
                    ShardIteratorType=position,  # type: ignore[arg-type]
                ).get("ShardIterator")
                self.shards[shard_id] = Shard(shard_id, shard.get("ParentShardId"), iterator)
            last = description.get("LastEvaluatedShardId")
            if not last:
                return
            arguments["ExclusiveStartShardId"] = last

    def may_read(self, shard: Shard) -> bool:
        """A child shard waits until its parent is read to its end and delivered: order holds across a split."""
        parent = self.shards.get(shard.parent_id) if shard.parent_id else None
        return parent is None or parent.finished

    def read(self, shard: Shard) -> int:
        """One get_records page into the shard's buffer, the filter applied; the number of records read."""
        assert shard.iterator is not None
        try:
            page = self._streams.get_records(ShardIterator=shard.iterator, Limit=GET_RECORDS_LIMIT)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ExpiredIteratorException":
                raise
            # Real iterators expire after 15 minutes; carry on after the last record read.
            shard.iterator = self._fresh_iterator(shard)
            page = self._streams.get_records(ShardIterator=shard.iterator, Limit=GET_RECORDS_LIMIT)
        shard.iterator = page.get("NextShardIterator")
        for raw in page["Records"]:
            record = self._as_pipe_record(raw)
            shard.last_sequence = record["dynamodb"]["SequenceNumber"]
            self._stats.records_read += 1
            if self._patterns and not any(pattern.matches(record) for pattern in self._patterns):
                self._stats.filtered_out += 1
                continue
            if not shard.buffer:
                shard.buffered_since = self._clock.now()
            shard.buffer.append(record)
        return len(page["Records"])

    def _fresh_iterator(self, shard: Shard) -> str:
        position: dict[str, Any] = {"StreamArn": self.config.source_arn, "ShardId": shard.shard_id}
        if shard.last_sequence is None:
            position["ShardIteratorType"] = self.config.starting_position
        else:
            position.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=shard.last_sequence)
        return self._streams.get_shard_iterator(**position)["ShardIterator"]

    def _as_pipe_record(self, raw: "RecordTypeDef") -> dict[str, Any]:
        """The record as the Pipe hands it on: JSON, epoch-second timestamps, base64 binaries, the stream ARN."""

        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return int(value.timestamp())
            if isinstance(value, bytes | bytearray):
                return base64.b64encode(value).decode()
            raise TypeError(f"{type(value).__name__} in a stream record")

        record: dict[str, Any] = json.loads(json.dumps(raw, default=plain))
        record["eventSourceARN"] = self.config.source_arn
        return record


def created_at(record: Mapping[str, Any]) -> float:
    """The record's ApproximateCreationDateTime in epoch seconds (0 when absent): what its age is measured from."""
    value = record.get("dynamodb", {}).get("ApproximateCreationDateTime")
    return float(value) if isinstance(value, int | float) else 0.0
