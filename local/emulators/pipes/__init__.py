"""The EventBridge Pipe, which moto accepts but never runs, emulated on AWS's documented behaviour only.

One module per role, as an event source mapping is laid out: `config` reads the template's
AWS::Pipes::Pipe and refuses what is not emulated; `source` reads the DynamoDB stream's shards and applies
the filter; `target` enriches a batch and puts it on the bus, mapping partial failures back to records;
`runner` batches, retries, bisects and dead-letters, and is what callers run; `paths` evaluates dynamic
path parameters; `state` holds what a runner keeps. The filter's pattern engine is shared with the rest of
the emulators: local/emulators/patterns.py. docs/aws-behaviour.md ("The Pipe") lists each behaviour with
its AWS document.
"""
