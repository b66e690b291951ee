"""What moto stores but never runs, emulated with AWS's documented semantics, on a clock they share.

One module per service behaviour, so a new behaviour has an obvious home:
- `pipes/`: the EventBridge Pipe (template -> config, stream source, enrichment and bus target, runner);
- `patterns.py`: the one EventBridge event pattern engine (a Pipe's filters, and any rule check);
- `event_source.py`: the SQS -> Lambda event source mapping;
- `ttl.py`: DynamoDB TTL deletion, late as in AWS;
- `apigw.py` and `http_api.py`: API Gateway's HTTP API (payload v2 events; the HTTP server of `make local`);
- `clock.py`: the time they and moto's SQS read;
- `pipeline.py`: all of them stepped together, from the outbox table to the consumer.

Not here: creating the template's resources in moto and moto's own fixes (local/aws/), traffic and
invariants (local/workload/), faults (local/chaos/).
"""
