"""What a run of the local stack would cost on AWS: every request counted where it is made, then billed.

Counting: `RequestMeter` hooks botocore's events on a session, so every client built from it afterwards
(the handlers', the Pipe's, the event source's) reports each API call once, with its parameters and its
answer, and with the function it was made from (`MeteredFunction` marks the invocation it runs, and times
it). `LogMeter` counts the bytes each function writes to its log. Nothing here changes what is called.

Billing units, by the documented rules:
- DynamoDB (https://aws.amazon.com/dynamodb/pricing/on-demand/,
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html): a write
  costs 1 unit per started KB of the larger of the item before and after it; a transactional write twice
  that; a read 1 unit per started 4 KB strongly consistent, half eventually consistent, twice in a
  transaction. A write whose condition fails is still a write of that item. A cancelled transaction is
  counted at the units of its whole content: no AWS page says what it consumes, so this is an upper bound.
  Item sizes are the stored items', read from moto's tables in this process.
- DynamoDB Streams: one read request unit per GetRecords call; no other Streams API is charged
  (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CostOptimization_StreamsUsage.html).
- EventBridge: each 64 KB chunk of an entry is one event (https://aws.amazon.com/eventbridge/pricing/);
  an entry's size follows https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html
  (14 bytes of Time, Source, DetailType, Detail, Resources).
- SQS: each request is billed per 64 KB chunk of its payload; a batch of up to 10 messages is one request.
- Lambda: duration rounded up to 1 ms per invocation (https://aws.amazon.com/lambda/pricing/), times the
  function's memory in GB.
"""
